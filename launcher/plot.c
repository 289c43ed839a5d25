/* `dltrain plot RUN_DIR [OUT.png]`: loss and accuracy curves of a run for
 * people without TensorBoard. The drawing is matplotlib's, in
 * scripts/plot.py; this command only finds the script and a Python that
 * has matplotlib, and runs it in place of itself (exec), so its output,
 * errors and exit code are the command's.
 *
 * The script is looked for beside the binary (<bin>/../scripts/plot.py,
 * as in the source tree and an install prefix), then under the current
 * directory; DLT_PLOT_SCRIPT overrides both. Python is DLT_PYTHON, else
 * Debian's /usr/bin/python3 (where python3-matplotlib installs), else
 * python3 from PATH. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/commands.h"

/* The first readable plot.py; NULL if none. */
static const char *find_script(char *buf, size_t len)
{
    const char *env = getenv("DLT_PLOT_SCRIPT");
    if (env && *env) return env;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        snprintf(buf, len, "%s/../scripts/plot.py", dirname(exe));
        if (access(buf, R_OK) == 0) return buf;
    }
    snprintf(buf, len, "scripts/plot.py");
    return access(buf, R_OK) == 0 ? buf : NULL;
}

int dlt_cmd_plot(int argc, char **argv)
{
    if (argc < 1 || argc > 2 || argv[0][0] == '-') {
        fprintf(stderr, "usage: dltrain plot RUN_DIR [OUT.png]   (default OUT: RUN_DIR/curves.png)\n");
        return 2;
    }
    char buf[PATH_MAX + 32];
    const char *script = find_script(buf, sizeof buf);
    if (!script) {
        fprintf(stderr, "dltrain: error: scripts/plot.py not found beside the binary or here; "
                        "set DLT_PLOT_SCRIPT to its path\n");
        return 1;
    }
    const char *py = getenv("DLT_PYTHON");
    if (!py || !*py) py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char *args[] = { (char *)py, (char *)script, argv[0], argc > 1 ? argv[1] : NULL, NULL };
    fflush(stdout);
    execvp(py, args);
    fprintf(stderr, "dltrain: error: cannot run %s: %s\n", py, strerror(errno));
    return 1;
}
