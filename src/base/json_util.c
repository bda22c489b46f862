/* json_util.c — loading JSON files with jansson and typed getters that tolerate number widths.
 * Errors name the file, line and column, so a bad config.json or tokenizer.json is easy to find. */
#include <jansson.h>
#include <math.h>

#include "tandem_base.h"

tandem_status json_load_path(const char *path, json_t **out) {
    json_error_t err;
    *out = NULL;
    /* JSON_REJECT_DUPLICATES: a duplicated key in a config is an error, not a silent choice. */
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (!root) {
        if (!path_exists(path)) return tandem_fail(TANDEM_ERR_IO, "%s: file not found", path);
        return tandem_fail(TANDEM_ERR_FORMAT, "%s: line %d column %d: invalid JSON: %s", path, err.line,
                           err.column, err.text);
    }
    *out = root;
    return TANDEM_OK;
}

bool json_get_int(const json_t *obj, const char *key, int64_t *out) {
    json_t *v = json_object_get(obj, key);
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) < 9e15) {
            *out = (int64_t)d;
            return true;
        }
    }
    return false;
}

bool json_get_number(const json_t *obj, const char *key, double *out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return true;
}

bool json_get_bool(const json_t *obj, const char *key, bool *out) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_boolean(v)) return false;
    *out = json_is_true(v);
    return true;
}

const char *json_get_string(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}
