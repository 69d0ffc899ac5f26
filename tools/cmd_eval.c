/* STUB: to be written. */
#include <stdio.h>
#include "cmd.h"
int cmd_eval(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "not yet\n"); return 1; }
