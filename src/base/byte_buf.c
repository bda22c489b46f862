/* byte_buf.c — a growing byte buffer: the GGUF writer's serialized values, the tokenizer's merges text.
 * Capacity doubles, so n appends of any sizes cost O(total) copies. */
#include <stdlib.h>

#include "tandem_base.h"

bool byte_buf_append(byte_buf *b, const void *p, size_t n) {
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) return false;
        b->data = grown;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return true;
}
