/* download.c — tandem_download: the hub's model-info API and resolve URLs over libcurl, several files at once, each
 * resumed from its .incomplete part, checked against the hub's digests, then renamed into the cache and linked. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub.h"

enum { INFO_MAX_BYTES = 64 << 20, ERROR_BODY_MAX = 2048, DEFAULT_PARALLEL = 4 };


tandem_download_params tandem_download_default_params(void) {
    tandem_download_params p;
    memset(&p, 0, sizeof p);
    return p;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;
static void curl_init(void) { curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* Percent-encodes s for a URL path; '/' is kept when keep_slash (file paths), encoded otherwise (a revision such as
 * refs/pr/1 is one path segment). */
static char *url_encode(const char *s, bool keep_slash) {
    static const char HEX[] = "0123456789ABCDEF";
    char *out = malloc(3 * strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~' || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = HEX[c >> 4];
            *o++ = HEX[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* mkdir -p of the folder that holds path (path itself not made). */
static bool make_parent_dirs(const char *path) {
    char *p = strdup(path);
    if (!p) return false;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int e = errno;
            free(p);
            errno = e;
            return false;
        }
        *s = '/';
    }
    free(p);
    return true;
}

/* ---- the job: files shared by the worker threads ---- */

typedef struct dl_file {
    const hub_sibling *s;
    char *url;            /* the resolve URL at the commit */
    char *final_path;     /* blobs/<id> in the cache; <dir>/<path> in a local folder */
    char *link_path;      /* snapshots/<commit>/<path> in the cache, else NULL */
    _Atomic int64_t have; /* bytes on disk (progress) */
} dl_file;

typedef struct dl_job {
    const char *repo_id, *endpoint;
    char *auth_header; /* "Authorization: Bearer …" or NULL */
    char *blobs_dir;   /* the cache's blobs folder, or NULL for a local folder */
    bool token_given;
    dl_file *files;
    size_t n_files;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    size_t next;      /* the next file a worker takes */
    size_t *finished; /* indices of completed files in completion order */
    size_t n_finished;
    int n_running;
    atomic_bool stop;
    tandem_status st; /* the first failure */
    char err[1024];   /* its message (tandem_last_error is per thread) */
} dl_job;

static void job_fail(dl_job *job, tandem_status st) {
    pthread_mutex_lock(&job->lock);
    if (!job->st) {
        job->st = st;
        snprintf(job->err, sizeof job->err, "%s", tandem_last_error());
    }
    atomic_store(&job->stop, true);
    pthread_mutex_unlock(&job->lock);
}

static tandem_status http_status_error(const dl_job *job, const char *what, long code) {
    if (code == 401 || code == 403)
        return tandem_fail(TANDEM_ERR_IO,
                           "%s: HTTP %ld from %s: the repository is private or gated, or the token is refused: %s",
                           what, code, job->endpoint,
                           job->token_given ? "check the token (HF_TOKEN or tandem_download_params.token) and that "
                                              "it has access to this repository"
                                            : "set HF_TOKEN (or tandem_download_params.token) to a token with access");
    if (code == 404) return tandem_fail(TANDEM_ERR_IO, "%s: not found (HTTP 404 from %s)", what, job->endpoint);
    return tandem_fail(TANDEM_ERR_IO, "%s: HTTP %ld from %s", what, code, job->endpoint);
}

/* ---- one transfer ---- */

typedef struct xfer {
    CURL *curl;
    dl_job *job;
    dl_file *f;
    int fd;
    int64_t offset; /* bytes already in the part when the request was made (the Range start) */
    bool decided;   /* the answer's status seen: writing to the file or collecting an error body */
    bool to_file;
    bool range_refused; /* 206 for other bytes than asked */
    int write_errno;
    digest *hash; /* the LFS file's SHA-256 as it is written, or NULL */
    char etag[160], linked_etag[160];
    int64_t range_start; /* of the latest answer's Content-Range, -1 if none */
    byte_buf body;       /* an error answer's body (its start) */
} xfer;

static void set_once(char *dst, size_t cap, const char *v, size_t n) {
    if (dst[0]) return;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *b, size_t size, size_t nitems, void *user) {
    xfer *x = user;
    size_t n = size * nitems, len = n;
    while (len > 0 && (b[len - 1] == '\r' || b[len - 1] == '\n')) len--;
    if (len >= 5 && !strncmp(b, "HTTP/", 5)) {
        x->range_start = -1;
        return n;
    }
    const char *colon = memchr(b, ':', len);
    if (!colon) return n;
    size_t name_len = (size_t)(colon - b);
    const char *v = colon + 1, *end = b + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    /* the hub's first answer carries the file's ids; a CDN's later answer has its own ETag */
    if (name_len == 4 && !strncasecmp(b, "etag", 4)) set_once(x->etag, sizeof x->etag, v, (size_t)(end - v));
    else if (name_len == 13 && !strncasecmp(b, "x-linked-etag", 13))
        set_once(x->linked_etag, sizeof x->linked_etag, v, (size_t)(end - v));
    else if (name_len == 13 && !strncasecmp(b, "content-range", 13)) {
        long long start;
        char tmp[96];
        size_t k = (size_t)(end - v) < sizeof tmp - 1 ? (size_t)(end - v) : sizeof tmp - 1;
        memcpy(tmp, v, k);
        tmp[k] = '\0';
        if (sscanf(tmp, "bytes %lld-", &start) == 1 && start >= 0) x->range_start = start;
    }
    return n;
}

static bool write_all(int fd, const char *p, size_t n, int *err) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            *err = errno;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static size_t on_body(char *b, size_t size, size_t nitems, void *user) {
    xfer *x = user;
    size_t n = size * nitems;
    if (!x->decided) {
        x->decided = true;
        long code = 0;
        curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &code);
        if (code == 206) {
            /* only the bytes asked for can extend the part */
            if (x->range_start != x->offset) {
                x->range_refused = true;
                return 0;
            }
            x->to_file = true;
        } else if (code == 200) {
            /* the whole file (a server that ignores Range): the part starts again */
            if (x->offset > 0) {
                if (ftruncate(x->fd, 0) != 0) {
                    x->write_errno = errno;
                    return 0;
                }
                if (x->hash) digest_init(x->hash, DIGEST_SHA256);
                atomic_store(&x->f->have, 0);
                x->offset = 0;
            }
            x->to_file = true;
        }
    }
    if (!x->to_file) {
        size_t room = x->body.len < ERROR_BODY_MAX ? ERROR_BODY_MAX - x->body.len : 0;
        byte_buf_append(&x->body, b, n < room ? n : room);
        return n;
    }
    if (!write_all(x->fd, b, n, &x->write_errno)) return 0;
    if (x->hash) digest_update(x->hash, b, n);
    atomic_fetch_add(&x->f->have, (int64_t)n);
    return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    const xfer *x = user;
    return atomic_load(&x->job->stop) ? 1 : 0;
}

static void normalize_etag(const char *in, char *out, size_t cap) {
    if (!strncmp(in, "W/", 2)) in += 2;
    size_t n = strlen(in);
    if (n >= 2 && in[0] == '"' && in[n - 1] == '"') in++, n -= 2;
    if (n >= cap) n = cap - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}

static bool is_hex_n(const char *s, size_t len) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return false;
    return n == len;
}

static CURL *new_handle(const dl_job *job, const char *url, struct curl_slist **headers, const char *range) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    struct curl_slist *h = NULL;
    if (job->auth_header) h = curl_slist_append(h, job->auth_header);
    if (range) h = curl_slist_append(h, range);
    *headers = h;
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (h) curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "tandem/" TANDEM_VERSION);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* a stalled connection (under 1 byte/s for 60 s) fails and is resumed by the next run */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    return c;
}

/* The hub's first answer to a HEAD of f's resolve URL: its X-Linked-Etag or ETag (the blob's name). */
static tandem_status head_etag(dl_job *job, dl_file *f, char *id, size_t cap) {
    xfer x = {.job = job, .f = f, .fd = -1, .range_start = -1};
    struct curl_slist *h = NULL;
    CURL *c = new_handle(job, f->url, &h, NULL);
    if (!c) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: %s: out of memory", job->repo_id, f->s->path);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    char what[600];
    snprintf(what, sizeof what, "%s: %s", job->repo_id, f->s->path);
    if (rc != CURLE_OK) return tandem_fail(TANDEM_ERR_IO, "%s: %s", what, curl_easy_strerror(rc));
    if (code >= 400) return http_status_error(job, what, code);
    normalize_etag(x.linked_etag[0] ? x.linked_etag : x.etag, id, cap);
    if (!id[0] || strchr(id, '/') || !strcmp(id, ".") || !strcmp(id, ".."))
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: the hub gives no usable ETag for it", what);
    return TANDEM_OK;
}

/* The git blob id of a file: SHA-1 of "blob <size>\0" and its bytes. */
static tandem_status file_digest(const char *path, int fd, digest_kind kind, bool git_blob, char hex[DIGEST_HEX_MAX]) {
    struct stat st;
    if (fstat(fd, &st) != 0) return tandem_fail(TANDEM_ERR_IO, "%s: %s", path, strerror(errno));
    digest d;
    digest_init(&d, kind);
    if (git_blob) {
        char head[64];
        int k = snprintf(head, sizeof head, "blob %lld", (long long)st.st_size);
        digest_update(&d, head, (size_t)k + 1); /* with its NUL */
    }
    char buf[1 << 16];
    for (off_t off = 0;;) {
        ssize_t r = pread(fd, buf, sizeof buf, off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return tandem_fail(TANDEM_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        if (r == 0) break;
        digest_update(&d, buf, (size_t)r);
        off += r;
    }
    digest_hex(&d, hex);
    return TANDEM_OK;
}

/* snapshots/<commit>/<path> → ../../(..)/blobs/<id>, relative as huggingface_hub makes it, replaced atomically. */
static tandem_status link_into_snapshot(const dl_job *job, const dl_file *f, const char *id) {
    size_t depth = 2;
    for (const char *p = f->s->path; *p; p++) depth += *p == '/';
    char *target = malloc(3 * depth + strlen("blobs/") + strlen(id) + 1);
    char *tmp = hub_printf("%s.tmp-link.%ld", f->link_path, (long)getpid());
    if (!target || !tmp) {
        free(target);
        free(tmp);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", f->link_path);
    }
    target[0] = '\0';
    for (size_t i = 0; i < depth; i++) strcat(target, "../");
    strcat(target, "blobs/");
    strcat(target, id);
    tandem_status st = TANDEM_OK;
    /* a file of the snapshot may share a name with a leftover link of a concurrent pull: replace, never append */
    if (!make_parent_dirs(f->link_path) || (unlink(tmp) != 0 && errno != ENOENT) || symlink(target, tmp) != 0 ||
        rename(tmp, f->link_path) != 0) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot link it to %s: %s", f->link_path, target, strerror(errno));
        unlink(tmp);
    }
    (void)job;
    free(target);
    free(tmp);
    return st;
}

/* Hashes the first n bytes already in the part into d. */
static tandem_status hash_existing(const char *path, int fd, int64_t n, digest *d) {
    char buf[1 << 16];
    for (int64_t off = 0; off < n;) {
        size_t want = (size_t)(n - off < (int64_t)sizeof buf ? n - off : (int64_t)sizeof buf);
        ssize_t r = pread(fd, buf, want, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return tandem_fail(TANDEM_ERR_IO, "%s: cannot read: %s", path, r < 0 ? strerror(errno) : "short");
        digest_update(d, buf, (size_t)r);
        off += r;
    }
    return TANDEM_OK;
}

/* One GET of f's resolve URL into the part (fd holding `offset` bytes): appended on 206, restarted on 200. */
/* etag (cap ≥ 1): the hub's id of the file from the first answer's X-Linked-Etag or ETag, normalized, or "". */
static tandem_status get_into_part(dl_job *job, dl_file *f, const char *part, int fd, int64_t offset, digest *hash,
                                   bool *restart_whole, char *etag, size_t cap) {
    char what[600];
    snprintf(what, sizeof what, "%s: %s", job->repo_id, f->s->path);
    *restart_whole = false;
    char range[64];
    snprintf(range, sizeof range, "Range: bytes=%lld-", (long long)offset);
    xfer x = {.job = job, .f = f, .fd = fd, .offset = offset, .hash = hash, .range_start = -1};
    struct curl_slist *h = NULL;
    CURL *c = new_handle(job, f->url, &h, offset > 0 ? range : NULL);
    if (!c) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(c, CURLOPT_PRIVATE, &x);
    x.curl = c;
    CURLcode rc;
    rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    tandem_status st = TANDEM_OK;
    if (x.write_errno) {
        st = tandem_fail(TANDEM_ERR_IO,
                         "%s: cannot write %s: %s: the part is kept there for the next run to resume once there "
                         "is room",
                         what, part, strerror(x.write_errno));
    } else if (atomic_load(&job->stop) && rc == CURLE_ABORTED_BY_CALLBACK) {
        st = tandem_fail(TANDEM_ERR_ABORTED, "%s: stopped (the part is kept in %s)", what, part);
    } else if (x.range_refused || (code == 416 && offset > 0)) {
        *restart_whole = true; /* other bytes than asked for, or a part the server does not know: start again */
    } else if (code >= 400) {
        st = http_status_error(job, what, code);
    } else if (rc != CURLE_OK) {
        st = tandem_fail(TANDEM_ERR_IO,
                         "%s: download interrupted after %lld of %lld bytes: %s: run again to resume (the part is "
                         "kept in %s)",
                         what, (long long)atomic_load(&f->have), (long long)f->s->size, curl_easy_strerror(rc), part);
    } else if (code != 200 && code != 206) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: unexpected HTTP %ld from %s", what, code, job->endpoint);
    }
    normalize_etag(x.linked_etag[0] ? x.linked_etag : x.etag, etag, cap);
    free(x.body.data);
    return st;
}

/* Brings one file into place: skipped when already there, else fetched into its part (resumed), checked, renamed,
 * and linked into the snapshot. */
static tandem_status fetch_file(dl_job *job, dl_file *f) {
    const hub_sibling *s = f->s;
    char what[600];
    snprintf(what, sizeof what, "%s: %s", job->repo_id, s->path);
    char id[DIGEST_HEX_MAX + 100] = "";
    tandem_status st = TANDEM_OK;
    if (job->blobs_dir) { /* the cache names the blob by the hub's id of its content */
        if (s->sha256) snprintf(id, sizeof id, "%s", s->sha256);
        else if (s->blob_id) snprintf(id, sizeof id, "%s", s->blob_id);
        else if ((st = head_etag(job, f, id, sizeof id))) return st;
        f->final_path = hub_printf("%s/%s", job->blobs_dir, id);
        if (!f->final_path) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
    }
    struct stat stt;
    if (stat(f->final_path, &stt) == 0 && S_ISREG(stt.st_mode) &&
        (job->blobs_dir || s->size < 0 || stt.st_size == s->size)) {
        atomic_store(&f->have, (int64_t)stt.st_size);
        return f->link_path ? link_into_snapshot(job, f, id) : TANDEM_OK;
    }
    char *part = hub_printf("%s.incomplete", f->final_path);
    if (!part) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", what);
    int fd = -1;
    digest sha;
    char etag[160] = "";
    for (;;) {
        if (!make_parent_dirs(part) || (fd = open(part, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666)) < 0) {
            st = tandem_fail(TANDEM_ERR_IO, "%s: cannot create %s: %s", what, part, strerror(errno));
            goto done;
        }
        /* one writer per part: another pull of the same file, or the same blob under a second name in this
         * one, waits here and then finds the blob in place */
        while (flock(fd, LOCK_EX) != 0)
            if (errno != EINTR) {
                st = tandem_fail(TANDEM_ERR_IO, "%s: cannot lock %s: %s", what, part, strerror(errno));
                goto done;
            }
        if (stat(f->final_path, &stt) == 0 && S_ISREG(stt.st_mode)) {
            atomic_store(&f->have, (int64_t)stt.st_size);
            if (f->link_path) st = link_into_snapshot(job, f, id);
            goto done;
        }
        struct stat named;
        if (fstat(fd, &stt) == 0 && stat(part, &named) == 0 && stt.st_ino == named.st_ino && stt.st_dev == named.st_dev)
            break;
        close(fd); /* the part was moved into place or removed meanwhile: open the name again */
        fd = -1;
    }
    int64_t have = stt.st_size;
    if (s->size >= 0 && have > s->size) { /* longer than the file: no prefix of it */
        if (ftruncate(fd, 0) != 0) {
            st = tandem_fail(TANDEM_ERR_IO, "%s: cannot truncate %s: %s", what, part, strerror(errno));
            goto done;
        }
        have = 0;
    }
    atomic_store(&f->have, have);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (s->sha256) {
            digest_init(&sha, DIGEST_SHA256);
            if ((st = hash_existing(part, fd, have, &sha))) goto done;
        }
        if (s->size >= 0 && have == s->size && have > 0) break; /* complete from an earlier run: check it */
        bool restart = false;
        st = get_into_part(job, f, part, fd, have, s->sha256 ? &sha : NULL, &restart, etag, sizeof etag);
        if (st) goto done;
        if (!restart) break;
        if (ftruncate(fd, 0) != 0) {
            st = tandem_fail(TANDEM_ERR_IO, "%s: cannot truncate %s: %s", what, part, strerror(errno));
            goto done;
        }
        have = 0;
        atomic_store(&f->have, 0);
    }
    if (fstat(fd, &stt) != 0) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: %s: %s", what, part, strerror(errno));
        goto done;
    }
    if (s->size >= 0 && stt.st_size != s->size) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: the download has %lld bytes, the hub lists %lld: run again to resume",
                         what, (long long)stt.st_size, (long long)s->size);
        goto done;
    }
    /* the listing's digests; without them, the ETag of the resolve URL names the content the same way (an LFS
     * file's sha256, any other file's git blob id) */
    char got[DIGEST_HEX_MAX];
    const char *want = NULL, *kind = NULL;
    if (s->sha256) {
        digest_hex(&sha, got);
        want = s->sha256, kind = "sha256";
    } else if (s->blob_id || is_hex_n(etag, 40)) {
        want = s->blob_id ? s->blob_id : etag, kind = "git blob id";
        if ((st = file_digest(part, fd, DIGEST_SHA1, true, got))) goto done;
    } else if (is_hex_n(etag, 64)) {
        want = etag, kind = "sha256";
        if ((st = file_digest(part, fd, DIGEST_SHA256, false, got))) goto done;
    }
    if (want && strcmp(got, want)) {
        unlink(part);
        st = tandem_fail(TANDEM_ERR_MISMATCH,
                         "%s: checksum mismatch: the download's %s is %s, the hub's metadata says %s: the file was "
                         "removed (a corrupted transfer or a changed file: run again)",
                         what, kind, got, want);
        goto done;
    }
    if (fdatasync(fd) != 0 || rename(part, f->final_path) != 0) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot move %s into place: %s", what, part, strerror(errno));
        goto done;
    }
    if (f->link_path) st = link_into_snapshot(job, f, id);
done:
    if (fd >= 0) close(fd);
    free(part);
    return st;
}

static void *worker(void *arg) {
    dl_job *job = arg;
    for (;;) {
        pthread_mutex_lock(&job->lock);
        size_t i = job->next < job->n_files && !atomic_load(&job->stop) ? job->next++ : SIZE_MAX;
        pthread_mutex_unlock(&job->lock);
        if (i == SIZE_MAX) break;
        tandem_status st = fetch_file(job, &job->files[i]);
        if (st) {
            job_fail(job, st);
            break;
        }
        pthread_mutex_lock(&job->lock);
        job->finished[job->n_finished++] = i;
        pthread_cond_signal(&job->cond);
        pthread_mutex_unlock(&job->lock);
    }
    pthread_mutex_lock(&job->lock);
    job->n_running--;
    pthread_cond_signal(&job->cond);
    pthread_mutex_unlock(&job->lock);
    return NULL;
}

/* ---- the model info ---- */

static size_t collect_body(char *b, size_t size, size_t nitems, void *user) {
    byte_buf *buf = user;
    size_t n = size * nitems;
    if (buf->len + n > INFO_MAX_BYTES || !byte_buf_append(buf, b, n)) return 0;
    return n;
}

static tandem_status fetch_info(dl_job *job, const char *revision, hub_info *info) {
    char *rev = url_encode(revision, false);
    char *url = rev ? hub_printf("%s/api/models/%s/revision/%s?blobs=true", job->endpoint, job->repo_id, rev) : NULL;
    free(rev);
    if (!url) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", job->repo_id);
    byte_buf body = {0};
    struct curl_slist *h = NULL;
    CURL *c = new_handle(job, url, &h, NULL);
    tandem_status st = TANDEM_OK;
    if (!c) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", job->repo_id);
        goto done;
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    char what[400];
    snprintf(what, sizeof what, "%s (revision %s)", job->repo_id, revision);
    if (rc == CURLE_WRITE_ERROR)
        st = tandem_fail(TANDEM_ERR_FORMAT, "%s: the model info from %s is over %d MiB", what, url,
                         INFO_MAX_BYTES >> 20);
    else if (rc != CURLE_OK)
        st = tandem_fail(TANDEM_ERR_IO, "%s: cannot reach %s: %s", what, url, curl_easy_strerror(rc));
    else if (code == 404)
        st = tandem_fail(TANDEM_ERR_IO, "%s: repository or revision not found at %s (HTTP 404)%s", what, job->endpoint,
                         job->token_given ? "" : "; if it is private, set HF_TOKEN (or tandem_download_params.token)");
    else if (code != 200) st = http_status_error(job, what, code);
    else st = hub_info_parse(url, (const char *)body.data, body.len, info);
done:
    if (c) curl_easy_cleanup(c);
    curl_slist_free_all(h);
    free(body.data);
    free(url);
    return st;
}

/* ---- tandem_download ---- */

static char *read_token(const tandem_download_params *p) {
    if (p->token && p->token[0]) return strdup(p->token);
    const char *v = getenv("HF_TOKEN");
    if (!v || !v[0]) v = getenv("HUGGING_FACE_HUB_TOKEN");
    if (v && v[0]) return strdup(v);
    /* huggingface-cli login's file */
    const char *home = getenv("HF_HOME"), *user_home = getenv("HOME"), *tp = getenv("HF_TOKEN_PATH");
    char *path = tp && tp[0]       ? strdup(tp)
                 : home && home[0] ? hub_printf("%s/token", home)
                                   : hub_printf("%s/.cache/huggingface/token", user_home ? user_home : ".");
    if (!path) return NULL;
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f) return NULL;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
    return n ? strdup(buf) : NULL;
}

static int cmp_path(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The files to fetch (indices into info->files, into sel), and which one *local_path names (SIZE_MAX: the
 * folder). */
static tandem_status select_files(const tandem_download_params *p, const hub_info *info, size_t *sel, size_t *n_sel,
                                  size_t *named) {
    *n_sel = 0;
    *named = SIZE_MAX;
    if (p->file) {
        for (size_t i = 0; i < info->n_files; i++)
            if (!strcmp(info->files[i].path, p->file)) {
                sel[(*n_sel)++] = i;
                *named = i;
                return TANDEM_OK;
            }
        /* a quantization: among the GGUF files, by name */
        char **ggufs = calloc(info->n_files + 1, sizeof *ggufs);
        if (!ggufs) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
        size_t n = 0;
        for (size_t i = 0; i < info->n_files; i++) {
            const char *path = info->files[i].path, *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
            size_t len = strlen(path);
            if (len > 5 && !strcasecmp(path + len - 5, ".gguf") && strncasecmp(base, "mmproj", 6))
                ggufs[n++] = info->files[i].path;
        }
        qsort(ggufs, n, sizeof *ggufs, cmp_path);
        size_t first = 0, count = 0;
        tandem_status st = TANDEM_OK;
        if (n == 0)
            st = tandem_fail(TANDEM_ERR_INVALID_ARG,
                             "%s: tandem_download_params.file \"%s\": no such file in the repository, and no GGUF "
                             "files to pick a quantization from",
                             p->repo_id, p->file);
        else if ((st = hub_pick_gguf(p->repo_id, ggufs, n, p->file, &first, &count)))
            tandem_error_prefix(
                "tandem_download_params.file \"%s\" is no file of the repository, and as a "
                "quantization",
                p->file);
        for (size_t k = first; !st && k < first + count; k++)
            for (size_t i = 0; i < info->n_files; i++)
                if (info->files[i].path == ggufs[k]) {
                    if (k == first) *named = i;
                    sel[(*n_sel)++] = i;
                }
        free(ggufs);
        return st;
    }
    for (size_t i = 0; i < info->n_files; i++) {
        bool take = p->n_include <= 0 || !p->include;
        for (int32_t k = 0; !take && k < p->n_include; k++)
            take = p->include[k] && fnmatch(p->include[k], info->files[i].path, 0) == 0;
        if (take) sel[(*n_sel)++] = i;
    }
    if (*n_sel == 0 && info->n_files > 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "%s: tandem_download_params.include matches none of its %zu files",
                           p->repo_id, info->n_files);
    return TANDEM_OK;
}

/* refs/<revision> ← commit, atomically (a branch or tag name; a commit needs no ref). */
static tandem_status write_ref(const char *repo_dir, const char *revision, const char *commit) {
    if (!strcmp(revision, commit)) return TANDEM_OK;
    char *path = hub_printf("%s/refs/%s", repo_dir, revision);
    if (!path) return tandem_fail(TANDEM_ERR_NO_MEMORY, "out of memory");
    tandem_status st = TANDEM_OK;
    int fd = -1;
    char *tmp = NULL;
    if (!make_parent_dirs(path)) st = tandem_fail(TANDEM_ERR_IO, "%s: %s", path, strerror(errno));
    else if (!(st = tandem_temp_file_create(path, &fd, &tmp))) {
        int e = 0;
        if (!write_all(fd, commit, strlen(commit), &e) || close(fd) != 0 || rename(tmp, path) != 0) {
            st = tandem_fail(TANDEM_ERR_IO, "%s: %s", path, strerror(e ? e : errno));
            unlink(tmp);
        }
    }
    free(tmp);
    free(path);
    return st;
}

/* n_done: the files completed as far as this report goes (those reported so far) */
static tandem_status report(const tandem_download_params *p, dl_job *job, const char *file, size_t n_done,
                            int64_t start) {
    if (!p->progress) return TANDEM_OK;
    tandem_download_progress pr = {.file = file,
                                   .n_files = (int32_t)job->n_files,
                                   .n_files_done = (int32_t)n_done,
                                   .bytes_start = start};
    for (size_t i = 0; i < job->n_files; i++) {
        pr.bytes_done += atomic_load(&job->files[i].have);
        pr.bytes_total += job->files[i].s->size > 0 ? job->files[i].s->size : 0;
    }
    if (!p->progress(&pr, p->user))
        return tandem_fail(TANDEM_ERR_ABORTED, "%s: stopped by the progress callback", p->repo_id);
    return TANDEM_OK;
}

/* Runs the workers and reports from this thread until they are done (or the callback stops them). */
static tandem_status run_job(const tandem_download_params *p, dl_job *job, int n_threads) {
    int64_t start = 0;
    for (size_t i = 0; i < job->n_files; i++) start += atomic_load(&job->files[i].have);
    pthread_t *threads = calloc((size_t)n_threads, sizeof *threads);
    if (!threads) return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
    int started = 0;
    pthread_mutex_lock(&job->lock);
    for (; started < n_threads; started++) {
        job->n_running++;
        if (pthread_create(&threads[started], NULL, worker, job) != 0) {
            job->n_running--;
            break;
        }
    }
    pthread_mutex_unlock(&job->lock);
    if (started == 0) {
        free(threads);
        return tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: cannot start a download thread", p->repo_id);
    }
    size_t reported = 0;
    pthread_mutex_lock(&job->lock);
    for (;;) {
        while (reported < job->n_finished) {
            const char *file = job->files[job->finished[reported++]].s->path;
            pthread_mutex_unlock(&job->lock);
            tandem_status st = report(p, job, file, reported, start);
            if (st) job_fail(job, st);
            pthread_mutex_lock(&job->lock);
        }
        if (job->n_running == 0) break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 250 * 1000 * 1000;
        if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
        int rc = pthread_cond_timedwait(&job->cond, &job->lock, &until);
        if (rc == ETIMEDOUT && job->n_running > 0) {
            pthread_mutex_unlock(&job->lock);
            tandem_status st = report(p, job, NULL, reported, start);
            if (st) job_fail(job, st);
            pthread_mutex_lock(&job->lock);
        }
    }
    pthread_mutex_unlock(&job->lock);
    for (int i = 0; i < started; i++) pthread_join(threads[i], NULL);
    free(threads);
    return TANDEM_OK;
}

static tandem_status download(const tandem_download_params *p, char **local_path) {
    char *repo_id_check = NULL, *select = NULL;
    bool ok = p->repo_id && hub_ref_split(p->repo_id, &repo_id_check, &select) && !select;
    free(repo_id_check);
    free(select);
    if (!ok)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_download_params.repo_id \"%.200s\" is not ORG/NAME",
                           p->repo_id ? p->repo_id : "(null)");
    if (p->n_parallel < 0 || p->n_parallel > 64)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_download_params.n_parallel %d is not in 0..64",
                           (int)p->n_parallel);
    if (p->file && p->include && p->n_include > 0)
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_download_params.file and tandem_download_params.include: give one, not both");
    if (p->file && !hub_path_ok(p->file))
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_download_params.file \"%.200s\" is not a repository path",
                           p->file);
    pthread_once(&curl_once, curl_init);
    if (curl_init_code != CURLE_OK)
        return tandem_fail(TANDEM_ERR_IO, "libcurl: %s", curl_easy_strerror(curl_init_code));
    const char *revision = p->revision && p->revision[0] ? p->revision : "main";
    if (!hub_path_ok(revision))
        return tandem_fail(TANDEM_ERR_INVALID_ARG,
                           "tandem_download_params.revision \"%.200s\" is no branch, tag or "
                           "commit name",
                           revision);
    const char *env_endpoint = getenv("HF_ENDPOINT");
    char *endpoint = strdup(p->endpoint && p->endpoint[0]     ? p->endpoint
                            : env_endpoint && env_endpoint[0] ? env_endpoint
                                                              : "https://huggingface.co");
    char *token = read_token(p);
    dl_job job = {.repo_id = p->repo_id, .endpoint = endpoint, .token_given = token != NULL};
    pthread_mutex_init(&job.lock, NULL);
    pthread_cond_init(&job.cond, NULL);
    hub_info info = {0};
    size_t *sel = NULL, n_sel = 0, named = SIZE_MAX;
    char *root = NULL, *repo_dir = NULL, *base = NULL;
    tandem_status st = TANDEM_OK;
    if (!endpoint || (token && !(job.auth_header = hub_printf("Authorization: Bearer %s", token)))) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
        goto done;
    }
    for (size_t n = strlen(endpoint); n > 0 && endpoint[n - 1] == '/';) endpoint[--n] = '\0';
    if ((st = fetch_info(&job, revision, &info))) goto done;
    sel = calloc(info.n_files + 1, sizeof *sel);
    if (!sel) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
        goto done;
    }
    if ((st = select_files(p, &info, sel, &n_sel, &named))) goto done;
    const char *slash = strchr(p->repo_id, '/');
    if (p->local_dir) {
        base = strdup(p->local_dir);
    } else {
        root = p->cache_dir && p->cache_dir[0] ? strdup(p->cache_dir) : hub_cache_root();
        repo_dir = root ? hub_printf("%s/models--%.*s--%s", root, (int)(slash - p->repo_id), p->repo_id, slash + 1)
                        : NULL;
        job.blobs_dir = repo_dir ? hub_printf("%s/blobs", repo_dir) : NULL;
        base = repo_dir ? hub_printf("%s/snapshots/%s", repo_dir, info.commit) : NULL;
    }
    job.files = calloc(n_sel + 1, sizeof *job.files);
    job.finished = calloc(n_sel + 1, sizeof *job.finished);
    if (!base || (!p->local_dir && !job.blobs_dir) || !job.files || !job.finished) {
        st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
        goto done;
    }
    job.n_files = n_sel;
    for (size_t k = 0; k < n_sel; k++) {
        dl_file *f = &job.files[k];
        f->s = &info.files[sel[k]];
        char *enc = url_encode(f->s->path, true);
        f->url = enc ? hub_printf("%s/%s/resolve/%s/%s", endpoint, p->repo_id, info.commit, enc) : NULL;
        free(enc);
        char *in_base = hub_printf("%s/%s", base, f->s->path);
        if (p->local_dir) f->final_path = in_base;
        else f->link_path = in_base;
        if (!f->url || !in_base) {
            st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
            goto done;
        }
        /* progress starts from what is on disk: the file, or its part */
        struct stat stt;
        const char *id = f->s->sha256 ? f->s->sha256 : f->s->blob_id;
        char *probe = p->local_dir ? strdup(f->final_path) : id ? hub_printf("%s/%s", job.blobs_dir, id) : NULL;
        if (probe && stat(probe, &stt) == 0) atomic_store(&f->have, (int64_t)stt.st_size);
        else if (probe) {
            char *part = hub_printf("%s.incomplete", probe);
            if (part && stat(part, &stt) == 0) atomic_store(&f->have, (int64_t)stt.st_size);
            free(part);
        }
        free(probe);
    }
    int n_threads = p->n_parallel > 0 ? p->n_parallel : DEFAULT_PARALLEL;
    if ((size_t)n_threads > n_sel) n_threads = (int)(n_sel ? n_sel : 1);
    if (n_sel > 0 && (st = run_job(p, &job, n_threads))) goto done;
    if (job.st) {
        st = tandem_fail(job.st, "%s", job.err);
        goto done;
    }
    if (!p->local_dir && (st = write_ref(repo_dir, revision, info.commit))) goto done;
    /* the folder exists even when no file was selected (an empty repository) */
    if ((!make_parent_dirs(base) || mkdir(base, 0777) != 0) && errno != EEXIST) {
        st = tandem_fail(TANDEM_ERR_IO, "%s: %s", base, strerror(errno));
        goto done;
    }
    *local_path = named == SIZE_MAX ? strdup(base) : hub_printf("%s/%s", base, info.files[named].path);
    if (!*local_path) st = tandem_fail(TANDEM_ERR_NO_MEMORY, "%s: out of memory", p->repo_id);
done:
    for (size_t k = 0; job.files && k < job.n_files; k++) {
        free(job.files[k].url);
        free(job.files[k].final_path);
        free(job.files[k].link_path);
    }
    free(job.files);
    free(job.finished);
    free(job.blobs_dir);
    free(job.auth_header);
    pthread_mutex_destroy(&job.lock);
    pthread_cond_destroy(&job.cond);
    hub_info_free(&info);
    free(sel);
    free(base);
    free(repo_dir);
    free(root);
    free(token);
    free(endpoint);
    return st;
}

tandem_status tandem_download(const tandem_download_params *params, char **local_path) {
    if (!params || !local_path)
        return tandem_fail(TANDEM_ERR_INVALID_ARG, "tandem_download: %s is NULL", params ? "local_path" : "params");
    *local_path = NULL;
    tandem_status st = download(params, local_path);
    if (st) tandem_error_prefix("tandem_download");
    return st;
}
