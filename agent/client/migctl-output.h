/* migctl-output.h — human output helpers for migctl: aligned tables, colour on a TTY,
 * and the per-command formatters (one function per command that has one). */
#pragma once

#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef struct _MaTable MaTable;

MaTable *ma_table_new (guint columns, ...);    /* the header cells */
void ma_table_add (MaTable *self, ...);        /* exactly `columns` strings */
void ma_table_print (MaTable *self);
void ma_table_free (MaTable *self);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaTable, ma_table_free)

gboolean ma_out_use_color (void);
void ma_out_set_color (gboolean color);
/* Wrap text in an ANSI colour when printing to a TTY: "red", "green", "yellow", "bold", "dim". */
const char *ma_out_paint (const char *color, const char *text);
/* "pass"/"ok"/"ready" green, "warn"/"slow" yellow, "fail"/"blocked" red. */
const char *ma_out_status (const char *status);

/* Pretty JSON to stdout. */
void ma_out_print_json (JsonNode *node, gboolean pretty);

/* A formatter prints a command's return for humans. */
typedef void (*MaFormatter) (JsonNode *ret);
/* The formatter for a command, or NULL (then migctl prints indented JSON). */
MaFormatter ma_out_find_formatter (const char *command);
void ma_out_print_event (JsonNode *event);

G_END_DECLS
