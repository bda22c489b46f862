/* train_run.c — tandem_train: the training loop behind the public API (data, schedule, validation, checkpoints,
 * progress, export). */
#include "train.h"
