/* pull.c — `tandem pull`: a model from the Hugging Face hub into the local cache (or a folder), with a progress
 * bar on stderr and the local path on stdout; the reference then works wherever a model path does. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static const char PULL_HELP[] =
    "usage: tandem pull REPO_ID[:FILE or :QUANT] [--include PATTERN]... [--revision R] [--dir DIR] [--parallel N]\n"
    "                   [--token T]\n"
    "Downloads a model from the Hugging Face hub into the local cache and prints its local path. The cache is\n"
    "huggingface_hub's (models downloaded with huggingface-cli are found, and tandem's are found by it); an\n"
    "interrupted download resumes where it stopped; every file is checked against the hub's sha256 / git id.\n"
    "  REPO_ID              ORG/NAME: every file of the repository (or those --include selects)\n"
    "  REPO_ID:QUANT        in a GGUF repository, the .gguf file whose name has QUANT (Qwen/Qwen3-8B-GGUF:Q4_K_M)\n"
    "  REPO_ID:FILE         one file of the repository (its path there)\n"
    "      --include PATTERN  only files matching PATTERN (fnmatch on the repository path, '*' crosses '/';\n"
    "                         repeatable: a file matching any is taken)\n"
    "      --revision R     branch, tag or commit (default main)\n"
    "      --dir DIR        into DIR as a plain folder instead of the cache\n"
    "      --parallel N     files downloaded at once (default 4)\n"
    "      --token T        token for private or gated repositories (default: $HF_TOKEN, else the one\n"
    "                       `huggingface-cli login` saved)\n"
    "environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN, HF_HUB_CACHE or HF_HOME (the cache is\n"
    "HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub).\n"
    "Afterwards the reference is a model path: tandem run -m Qwen/Qwen3-8B-GGUF:Q4_K_M -p 'Hello'\n";

typedef struct pull_bar {
    bool tty;
    double t0;
    int width; /* of the last line drawn, to blank it */
} pull_bar;

static double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void human_bytes(double b, char *out, size_t cap) {
    const char *units[] = {"B", "kB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000 && u < 4) b /= 1000, u++;
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

static void human_time(double s, char *out, size_t cap) {
    if (!(s >= 0) || s > 360000) snprintf(out, cap, "--:--");
    else if (s >= 3600) snprintf(out, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(out, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

/* A terminal gets one line redrawn in place (bytes, speed, time left); anything else a line per finished file. */
static bool on_progress(const tandem_download_progress *p, void *user) {
    pull_bar *bar = user;
    if (!bar->tty) {
        if (p->file) fprintf(stderr, "tandem pull: %s (%d/%d files)\n", p->file, p->n_files_done, p->n_files);
        return !cli_interrupted;
    }
    double elapsed = seconds_now() - bar->t0;
    double moved = (double)(p->bytes_done - p->bytes_start);
    double speed = elapsed > 0.2 ? moved / elapsed : 0;
    char done[32], total[32], rate[32], eta[32];
    human_bytes((double)p->bytes_done, done, sizeof done);
    human_bytes((double)p->bytes_total, total, sizeof total);
    human_bytes(speed, rate, sizeof rate);
    human_time(speed > 0 ? (double)(p->bytes_total - p->bytes_done) / speed : -1, eta, sizeof eta);
    int pct = p->bytes_total > 0 ? (int)(100.0 * (double)p->bytes_done / (double)p->bytes_total) : 0;
    int w = fprintf(stderr, "\r%s / %s (%3d%%), %s/s, %s left, %d/%d files", done, total, pct, rate, eta,
                    p->n_files_done, p->n_files);
    for (int i = w; i < bar->width; i++) fputc(' ', stderr);
    if (w > 0) bar->width = w;
    fflush(stderr);
    return !cli_interrupted;
}

int cmd_pull(int argc, char **argv) {
    args a = {"pull", argc, argv, 0};
    tandem_download_params p = tandem_download_default_params();
    const char *ref = NULL;
    const char **include = calloc((size_t)argc, sizeof *include);
    int n_include = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(PULL_HELP, stdout);
            free(include);
            return 0;
        } else if (!strcmp(f, "--include")) include[n_include++] = take_value(&a, f);
        else if (!strcmp(f, "--revision")) p.revision = take_value(&a, f);
        else if (!strcmp(f, "--dir")) p.local_dir = take_value(&a, f);
        else if (!strcmp(f, "--parallel")) p.n_parallel = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 64);
        else if (!strcmp(f, "--token")) p.token = take_value(&a, f);
        else if (f[0] == '-') die_usage("pull", "unknown option '%s'", f);
        else if (ref) die_usage("pull", "more than one REPO_ID given ('%s' and '%s')", ref, f);
        else ref = f;
    }
    if (!ref) die_usage("pull", "missing REPO_ID (ORG/NAME, ORG/NAME:QUANT or ORG/NAME:FILE)");
    /* ORG/NAME:X → repo_id ORG/NAME and X, a file or a quantization (the library tells which from the listing) */
    char *repo_id = strdup(ref);
    char *colon = strchr(repo_id, ':');
    if (colon) {
        *colon = '\0';
        p.file = colon + 1;
        if (!p.file[0]) die_usage("pull", "'%s': nothing after ':' (a file or a quantization such as Q4_K_M)", ref);
        if (n_include) die_usage("pull", "--include selects files of a whole repository: not with '%s'", ref);
    }
    if (!strchr(repo_id, '/')) die_usage("pull", "'%s' is not a hub repository id ORG/NAME", ref);
    p.repo_id = repo_id;
    p.include = include;
    p.n_include = n_include;
    pull_bar bar = {isatty(STDERR_FILENO), seconds_now(), 0};
    p.progress = on_progress;
    p.user = &bar;
    cli_catch(SIGINT);
    cli_catch(SIGTERM);
    /* a file-size limit (ulimit -f) then fails the write with EFBIG, reported like a full disk, instead of
     * killing the process */
    signal(SIGXFSZ, SIG_IGN);
    char *path = NULL;
    tandem_status st = tandem_download(&p, &path);
    if (bar.tty && bar.width) fputc('\n', stderr);
    free(include);
    free(repo_id);
    if (st == TANDEM_ERR_ABORTED && cli_interrupted) {
        fprintf(stderr,
                "tandem pull: interrupted: the partial files are kept; run the same command again to "
                "resume\n");
        return 130;
    }
    if (st) die_status("pull", st);
    printf("%s\n", path);
    tandem_free(path);
    return 0;
}
