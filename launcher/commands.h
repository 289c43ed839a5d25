/* Sub-commands of the dltrain program. Each takes the arguments after its
 * name and returns the process exit code. */
#ifndef DLT_COMMANDS_H
#define DLT_COMMANDS_H

#define DLT_VERSION "0.1.0"

int dlt_cmd_train(int argc, char **argv);
int dlt_cmd_eval(int argc, char **argv);
int dlt_cmd_predict(int argc, char **argv);
/* Token models (launcher/predict_text.c): is the config's data token shards? */
int dlt_predict_is_text(int argc, char **argv);
int dlt_cmd_predict_text(int argc, char **argv);
int dlt_cmd_init_from(int argc, char **argv);
int dlt_cmd_export(int argc, char **argv);
int dlt_cmd_plot(int argc, char **argv);
int dlt_cmd_doctor(int argc, char **argv);

#endif
