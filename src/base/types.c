/* types.c — sizes and names of the tensor types tandem knows (ids and block layouts equal ggml's).
 * Lives in base because both the file readers (size checks) and the kernels need it. */
#include "tandem_base.h"

typedef struct type_traits {
    const char *name;
    int32_t block_size;  /* elements per block */
    int32_t type_size;   /* bytes per block */
} type_traits;

static const type_traits traits[TANDEM_TYPE_COUNT] = {
    [TANDEM_TYPE_F32] = {"F32", 1, 4},       [TANDEM_TYPE_F16] = {"F16", 1, 2},
    [TANDEM_TYPE_Q4_0] = {"Q4_0", 32, 18},   [TANDEM_TYPE_Q4_1] = {"Q4_1", 32, 20},
    [TANDEM_TYPE_Q5_0] = {"Q5_0", 32, 22},   [TANDEM_TYPE_Q5_1] = {"Q5_1", 32, 24},
    [TANDEM_TYPE_Q8_0] = {"Q8_0", 32, 34},   [TANDEM_TYPE_Q8_1] = {"Q8_1", 32, 36},
    [TANDEM_TYPE_Q2_K] = {"Q2_K", 256, 84},  [TANDEM_TYPE_Q3_K] = {"Q3_K", 256, 110},
    [TANDEM_TYPE_Q4_K] = {"Q4_K", 256, 144}, [TANDEM_TYPE_Q5_K] = {"Q5_K", 256, 176},
    [TANDEM_TYPE_Q6_K] = {"Q6_K", 256, 210}, [TANDEM_TYPE_Q8_K] = {"Q8_K", 256, 292},
    [TANDEM_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18}, [TANDEM_TYPE_BF16] = {"BF16", 1, 2},
    [24] = {"I8", 1, 1}, [25] = {"I16", 1, 2}, [26] = {"I32", 1, 4}, [27] = {"I64", 1, 8},
    [28] = {"F64", 1, 8},
};

bool tandem_type_known(int32_t t) { return t >= 0 && t < TANDEM_TYPE_COUNT && traits[t].name != NULL; }
const char *tandem_type_name(tandem_type t) { return tandem_type_known((int32_t)t) ? traits[t].name : "?"; }
int32_t tandem_type_block_size(tandem_type t) { return tandem_type_known((int32_t)t) ? traits[t].block_size : 0; }
int32_t tandem_type_size(tandem_type t) { return tandem_type_known((int32_t)t) ? traits[t].type_size : 0; }

bool tandem_type_row_bytes(tandem_type t, int64_t n_elements, uint64_t *out) {
    int32_t bs = tandem_type_block_size(t);
    if (bs <= 0 || n_elements < 0 || n_elements % bs != 0) return false;
    return size_mul_ok((uint64_t)(n_elements / bs), (uint64_t)tandem_type_size(t), out);
}
