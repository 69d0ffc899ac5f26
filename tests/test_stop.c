/* Stop strings over bytes (engine/stop.h): found after an embedded NUL, only where they end in
 * the new text, the earliest match winning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "engine/stop.h"

static void test_found_after_embedded_nul(void **state) {
    (void)state;
    const char text[] = "abc\0def STOP tail"; /* a token decoded to a NUL byte */
    const char *stops[] = {"STOP"};
    size_t at = 0;
    assert_true(qm_stop_find(text, sizeof text - 1, 3, stops, 1, &at)); /* a C-string search stops at the NUL */
    assert_int_equal(at, 8);
    const char *nul_then[] = {"c"};
    assert_false(qm_stop_find(text, sizeof text - 1, 4, nul_then, 1, &at)); /* "c" ends before the new bytes */
}

static void test_only_matches_ending_in_new_bytes(void **state) {
    (void)state;
    const char *stops[] = {"ab"};
    size_t at = 0;
    assert_false(qm_stop_find("ab--", 4, 3, stops, 1, &at)); /* seen before: not again */
    assert_true(qm_stop_find("xxab", 4, 3, stops, 1, &at));  /* straddles old and new */
    assert_int_equal(at, 2);
    assert_true(qm_stop_find("ab", 2, 0, stops, 1, &at));
    assert_int_equal(at, 0);
    assert_false(qm_stop_find("a", 1, 0, stops, 1, &at));
}

static void test_earliest_wins_and_empty_ignored(void **state) {
    (void)state;
    const char *stops[] = {"", "Question:", "\n\n"};
    size_t at = 0;
    const char text[] = "x\n\nQuestion: y"; /* one token brought both: the text ends at the first */
    assert_true(qm_stop_find(text, sizeof text - 1, 0, stops, 3, &at));
    assert_int_equal(at, 1);
    const char *none[] = {""};
    assert_false(qm_stop_find(text, sizeof text - 1, 0, none, 1, &at));
    assert_false(qm_stop_find(text, sizeof text - 1, 0, NULL, 0, &at));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_found_after_embedded_nul),
        cmocka_unit_test(test_only_matches_ending_in_new_bytes),
        cmocka_unit_test(test_earliest_wins_and_empty_ignored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
