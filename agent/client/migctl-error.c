/* migctl-error.c — the host side's GError domain (codes are migctl's exit statuses). */
#include "migctl-error.h"

G_DEFINE_QUARK (migctl-error-quark, migctl_error)
