#include "util/coop.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/affinity.h"
#include "util/futex.h"
#include "util/pool.h"

/* AddressSanitizer keeps a shadow of each stack: it is told of every switch between them. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define ASAN_START(fake, bottom, size) __sanitizer_start_switch_fiber(fake, bottom, size)
#define ASAN_FINISH(fake, bottom, size) __sanitizer_finish_switch_fiber(fake, bottom, size)
#else
#define ASAN_START(fake, bottom, size) ((void)(fake), (void)(bottom), (void)(size))
#define ASAN_FINISH(fake, bottom, size) ((void)(fake), (void)(bottom), (void)(size))
#endif

#define STACK_BYTES ((size_t)8 << 20) /* as a thread's default stack; untouched pages cost nothing */
#define SPIN_ROUNDS 2000              /* pauses before a thread whose tasks all wait sleeps */
#define SLEEP_US 200                  /* the longest sleep before the other tasks' words are seen */

typedef struct worker worker;

/* ---- the switch between stacks ----
 * x86-64: the callee-saved registers, MXCSR and the x87 control word pushed on the stack being
 * left, its stack pointer stored, the other's loaded and popped: no system call (glibc's
 * swapcontext also saves the signal mask, a system call each way, which at 16 devices a thread
 * and two barriers a row sum cost milliseconds a token). Elsewhere: ucontext. */
#if defined(__x86_64__) && !defined(QM_COOP_UCONTEXT)
typedef struct {
    void *sp;
} coop_ctx;

void qm_coop_switch_x86_64(void **save_sp, void *load_sp);
void qm_coop_start_x86_64(void);
__asm__(".text\n"
        ".p2align 4\n"
        ".globl qm_coop_switch_x86_64\n"
        ".hidden qm_coop_switch_x86_64\n"
        ".type qm_coop_switch_x86_64, @function\n"
        "qm_coop_switch_x86_64:\n"
        "    pushq %rbp\n    pushq %rbx\n    pushq %r12\n    pushq %r13\n    pushq %r14\n    pushq %r15\n"
        "    subq $8, %rsp\n    stmxcsr (%rsp)\n    fnstcw 4(%rsp)\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    ldmxcsr (%rsp)\n    fldcw 4(%rsp)\n    addq $8, %rsp\n"
        "    popq %r15\n    popq %r14\n    popq %r13\n    popq %r12\n    popq %rbx\n    popq %rbp\n"
        "    ret\n"
        ".size qm_coop_switch_x86_64, .-qm_coop_switch_x86_64\n"
        /* a new stack's first return lands here: entry(arg) from r12 / r13, which never returns */
        ".p2align 4\n"
        ".globl qm_coop_start_x86_64\n"
        ".hidden qm_coop_start_x86_64\n"
        ".type qm_coop_start_x86_64, @function\n"
        "qm_coop_start_x86_64:\n"
        "    movq %r12, %rdi\n    callq *%r13\n    ud2\n"
        ".size qm_coop_start_x86_64, .-qm_coop_start_x86_64\n");

static void ctx_switch(coop_ctx *save, coop_ctx *load) { qm_coop_switch_x86_64(&save->sp, load->sp); }

/* A stack whose first switch-in calls entry(arg): the frame the switch pops, over a return
 * address into qm_coop_start_x86_64, 16-byte aligned there as a call expects. */
static int ctx_make(coop_ctx *c, char *stack, size_t bytes, void (*entry)(void *), void *arg) {
    uintptr_t top = ((uintptr_t)(stack + bytes) & ~(uintptr_t)15) - 16;
    uint64_t *sp = (uint64_t *)top;
    *--sp = (uint64_t)(uintptr_t)qm_coop_start_x86_64; /* lands 16-aligned after its ret */
    *--sp = 0;                                           /* rbp */
    *--sp = 0;                                           /* rbx */
    *--sp = (uint64_t)(uintptr_t)arg;                    /* r12 */
    *--sp = (uint64_t)(uintptr_t)entry;                  /* r13 */
    *--sp = 0;                                           /* r14 */
    *--sp = 0;                                           /* r15 */
    *--sp = 0x037f00001f80ull; /* MXCSR and x87 control word: the defaults */
    c->sp = sp;
    return 0;
}
#else
#include <ucontext.h>
typedef struct {
    ucontext_t uc;
} coop_ctx;

static void ctx_switch(coop_ctx *save, coop_ctx *load) { swapcontext(&save->uc, &load->uc); }

/* makecontext passes ints: the argument's and the entry's addresses in two halves each. */
static void ctx_trampoline(unsigned lo, unsigned hi, unsigned elo, unsigned ehi) {
    void (*entry)(void *);
    const uintptr_t e = ((uintptr_t)ehi << 32) | (uintptr_t)elo;
    memcpy(&entry, &e, sizeof entry);
    entry((void *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

static int ctx_make(coop_ctx *c, char *stack, size_t bytes, void (*entry)(void *), void *arg) {
    if (getcontext(&c->uc)) return -1;
    c->uc.uc_stack.ss_sp = stack;
    c->uc.uc_stack.ss_size = bytes;
    c->uc.uc_link = NULL; /* entry never returns */
    const uintptr_t p = (uintptr_t)arg;
    uintptr_t e;
    memcpy(&e, &entry, sizeof e);
    makecontext(&c->uc, (void (*)(void))ctx_trampoline, 4, (unsigned)(p & 0xffffffffu), (unsigned)(p >> 32),
                (unsigned)(e & 0xffffffffu), (unsigned)(e >> 32));
    return 0;
}
#endif

struct qm_coop_task {
    coop_ctx ctx;
    char *stack; /* STACK_BYTES after a guard page */
    worker *w;
    int index;
    bool done;
    atomic_uint *word; /* waiting while *word == expected; NULL: runnable */
    unsigned expected;
    atomic_uint *sleepers;
    void *asan_fake;
};

struct worker {
    coop_ctx main;
    atomic_uint *gate;   /* 0 while threads start, then GO or STOP */
    qm_coop_task *tasks; /* this thread's stretch */
    int n_tasks, cpu;
    qm_coop_fn fn;
    void *arg;
    const void *asan_bottom; /* the thread's own stack, for the sanitizer */
    size_t asan_size;
};

static bool waiting(const qm_coop_task *t) {
    return t->word && atomic_load_explicit(t->word, memory_order_acquire) == t->expected;
}

/* A task's stack starts here and leaves for good at its end, back to its worker. */
static void task_entry(void *arg) {
    qm_coop_task *t = arg;
    worker *w = t->w;
    ASAN_FINISH(NULL, &w->asan_bottom, &w->asan_size);
    w->fn(w->arg, t->index, t);
    t->done = true;
    ASAN_START(NULL, w->asan_bottom, w->asan_size); /* NULL: this stack is left for good */
    ctx_switch(&t->ctx, &w->main);
    abort(); /* never resumed: run_round skips a done task */
}

void qm_coop_wait(qm_coop_task *t, atomic_uint *word, unsigned expected, atomic_uint *sleepers) {
    worker *w = t->w;
    t->word = word;
    t->expected = expected;
    t->sleepers = sleepers;
    ASAN_START(&t->asan_fake, w->asan_bottom, w->asan_size);
    ctx_switch(&t->ctx, &w->main);
    ASAN_FINISH(t->asan_fake, &w->asan_bottom, &w->asan_size);
}

static void resume(worker *w, qm_coop_task *t) {
    void *fake = NULL;
    t->word = NULL;
    ASAN_START(&fake, t->stack, STACK_BYTES);
    ctx_switch(&w->main, &t->ctx);
    ASAN_FINISH(fake, NULL, NULL);
}

/* Every task of w whose word moved runs until it waits again or returns; returns how many ran. */
static int run_round(worker *w, int *live) {
    int ran = 0;
    for (int i = 0; i < w->n_tasks; i++) {
        qm_coop_task *t = &w->tasks[i];
        if (t->done || waiting(t)) continue;
        resume(w, t);
        ran++;
        if (t->done) (*live)--;
    }
    return ran;
}

/* All of w's live tasks wait: sleep on the first one's word (its owner wakes sleepers). */
static void sleep_on_first(worker *w) {
    for (int i = 0; i < w->n_tasks; i++) {
        qm_coop_task *t = &w->tasks[i];
        if (t->done || !t->word) continue;
        atomic_fetch_add(t->sleepers, 1); /* seq_cst, then the re-check: see mesh/barrier.c */
        if (atomic_load(t->word) == t->expected) qm_futex_wait(t->word, t->expected, SLEEP_US);
        atomic_fetch_sub(t->sleepers, 1);
        return;
    }
}

enum { GO = 1, STOP = 2 };

static void *worker_main(void *arg) {
    worker *w = arg;
    while (atomic_load(w->gate) == 0) qm_futex_wait(w->gate, 0, 0);
    if (atomic_load(w->gate) == STOP) return NULL;
    if (w->cpu >= 0) (void)qm_pin_current_thread(w->cpu);
    int live = w->n_tasks;
    for (int idle = 0; live > 0;) {
        if (run_round(w, &live)) idle = 0;
        else if (++idle < SPIN_ROUNDS) qm_cpu_pause();
        else sleep_on_first(w);
    }
    return NULL;
}

static qm_status make_task(qm_coop_task *t, worker *w, int index, qm_error *err) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *m = mmap(NULL, STACK_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return qm_fail(err, QM_ERR_NOMEM, "cannot map a stack for device %d: %s", index, strerror(errno));
    (void)mprotect(m, page, PROT_NONE); /* the guard below the stack */
    *t = (qm_coop_task){.stack = (char *)m + page, .w = w, .index = index};
    if (ctx_make(&t->ctx, t->stack, STACK_BYTES, task_entry, t))
        return qm_fail(err, QM_ERR_NOMEM, "cannot make the context of device %d: %s", index, strerror(errno));
    return QM_OK;
}

static void free_tasks(qm_coop_task *tasks, int n) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (int i = 0; i < n; i++)
        if (tasks[i].stack) munmap(tasks[i].stack - page, STACK_BYTES + page);
    free(tasks);
}

/* Threads 1.. started, thread 0 is the caller (its placement restored after). All or none run:
 * a task left unrun would hang the others at their first barrier. */
static qm_status run_workers(worker *ws, int workers, atomic_uint *gate, qm_error *err) {
    pthread_t *th = calloc((size_t)workers, sizeof *th);
    if (!th) return qm_fail(err, QM_ERR_NOMEM, "out of memory");
    int started = 1;
    qm_status st = QM_OK;
    for (; started < workers; started++)
        if (pthread_create(&th[started], NULL, worker_main, &ws[started])) {
            st = qm_fail(err, QM_ERR_NOMEM, "cannot start device thread %d", started);
            break;
        }
    atomic_store(gate, st == QM_OK ? GO : STOP);
    qm_futex_wake_all(gate);
    if (st == QM_OK) {
        qm_thread_affinity saved;
        qm_affinity_save(&saved);
        worker_main(&ws[0]);
        qm_affinity_restore(&saved);
    }
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    free(th);
    return st;
}

qm_status qm_coop_run(int n, int workers, const int *cpus, qm_coop_fn fn, void *arg, qm_error *err) {
    if (n < 1 || workers < 1 || workers > n)
        return qm_fail(err, QM_ERR_ARG, "coop: %d tasks on %d threads", n, workers);
    qm_coop_task *tasks = calloc((size_t)n, sizeof *tasks);
    worker *ws = calloc((size_t)workers, sizeof *ws);
    qm_status st = tasks && ws ? QM_OK : qm_fail(err, QM_ERR_NOMEM, "out of memory");
    atomic_uint gate;
    atomic_init(&gate, 0);
    for (int k = 0; k < workers && !st; k++) {
        long b, e;
        qm_split_range(n, k, workers, &b, &e);
        ws[k] = (worker){.tasks = tasks + b, .n_tasks = (int)(e - b), .cpu = cpus ? cpus[k] : -1, .gate = &gate, .fn = fn, .arg = arg};
        for (long i = b; i < e && !st; i++) st = make_task(&tasks[i], &ws[k], (int)i, err);
    }
    if (!st) st = run_workers(ws, workers, &gate, err);
    if (tasks) free_tasks(tasks, n);
    free(ws);
    return st;
}
