/* Sub-commands of the dltrain program. Each takes the arguments after its
 * name and returns the process exit code. */
#ifndef DLT_COMMANDS_H
#define DLT_COMMANDS_H

#define DLT_VERSION "0.1.0"

int dlt_cmd_train(int argc, char **argv);

#endif
