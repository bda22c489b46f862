/* fuzz_chat_template.c — the chat-template interpreter on arbitrary template text and messages JSON (input:
 * template SEP messages [SEP tools], SEP = "\n#--8<--#\n"):
 *  - parse and render never crash or hang (the sandbox's limits end every render) and every failure carries a
 *    message naming the template's origin;
 *  - a render is valid UTF-8 (templates and JSON are), NUL-terminated at text_len, and the same twice.
 * Seeds: every golden case of tests/golden/chat/cases.json whose template is in the repo. */
#include "fuzz_common.h"

static const char SEP[] = "\n#--8<--#\n";

static bool valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

/* The part of [p, end) before the next SEP; *next past it (end when there is none). */
static size_t part(const char *p, const char *end, const char **next) {
    const char *hit = memmem(p, (size_t)(end - p), SEP, sizeof SEP - 1);
    if (!hit) {
        *next = end;
        return (size_t)(end - p);
    }
    *next = hit + sizeof SEP - 1;
    return (size_t)(hit - p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = (const char *)data, *end = p + size, *next;
    size_t tmpl_len = part(p, end, &next);
    const char *msgs = next;
    size_t msgs_len = part(msgs, end, &next);
    const char *tools = next;
    size_t tools_len = part(tools, end, &next);

    tandem_chat_template *t = NULL;
    fuzz_clear_error();
    tandem_status st = tandem_chat_template_parse(p, tmpl_len, "fuzz.jinja", &t);
    fuzz_check_failure(st);
    if (st) {
        FUZZ_CHECK(t == NULL && strstr(tandem_last_error(), "fuzz.jinja"));
        return 0;
    }
    char *tools_z = NULL;
    if (tools_len) {
        tools_z = malloc(tools_len + 1);
        FUZZ_CHECK(tools_z != NULL);
        memcpy(tools_z, tools, tools_len);
        tools_z[tools_len] = '\0';
    }
    tandem_chat_render_params rp = tandem_chat_render_default_params();
    rp.add_generation_prompt = size & 1;
    rp.enable_thinking = (int32_t)(size % 3) - 1;
    rp.tools_json = tools_z;
    rp.now_unix = 1700049600;
    rp.max_output_bytes = 1 << 20;
    const char *empty = "[]";
    if (!msgs_len) {
        msgs = empty;
        msgs_len = 2;
    }
    char *text = NULL, *again = NULL;
    size_t n = 0, n2 = 0;
    fuzz_clear_error();
    st = tandem_chat_render(t, msgs, msgs_len, &rp, &text, &n);
    fuzz_check_failure(st);
    if (st == TANDEM_OK) {
        FUZZ_CHECK(text != NULL && text[n] == '\0');
        FUZZ_CHECK(valid_utf8(text, n));
        FUZZ_CHECK(tandem_chat_render(t, msgs, msgs_len, &rp, &again, &n2) == TANDEM_OK);
        FUZZ_CHECK(n2 == n && memcmp(text, again, n) == 0);
    } else {
        FUZZ_CHECK(text == NULL);
        FUZZ_CHECK(strstr(tandem_last_error(), "tandem_chat_render: "));
    }
    tandem_free(text);
    tandem_free(again);
    free(tools_z);
    tandem_chat_template_free(t);
    return 0;
}
