/* kernel_calls_runtime.c — a deliberate breach of the layer rule, built only with -DTANDEM_LAYER_PROBE=ON: a kernels
 * object that calls the runtime's tandem_generate, which tandem_layer_check_kernels must refuse to link. */
#include "tandem.h"

tandem_status layer_probe_kernel_calls_runtime(tandem_ctx *ctx);

tandem_status layer_probe_kernel_calls_runtime(tandem_ctx *ctx) { return tandem_generate(ctx, NULL, 0, NULL, NULL); }
