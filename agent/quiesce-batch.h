/* quiesce-batch.h — one phase over a set of plugins: in dependency order (or its reverse),
 * in parallel where independent, stopping at the first failure when asked; the results. */
#pragma once

#include <json-glib/json-glib.h>

#include "plugin-run.h"
#include "plugin.h"

G_BEGIN_DECLS

typedef struct _MaBatch MaBatch;

typedef enum
{
  ITEM_PENDING,
  ITEM_RUNNING,
  ITEM_OK,
  ITEM_FAILED,
} MaItemState;

typedef struct
{
  MaBatch *batch;
  MaPlugin *plugin;
  MaPluginProcess **session; /* the operation's slot for a session plugin, or NULL */
  MaItemState state;
  MaPhaseResult *result;
} MaBatchItem;

typedef void (*MaBatchFunc) (MaBatch *batch, gpointer user_data);
/* items: the MaBatchItem* about to start together (one wave: everything that became ready) */
typedef void (*MaBatchWaveFunc) (MaBatch *batch, GPtrArray *items, gpointer user_data);

/* What the owner of a batch hears as it runs; each may be NULL. */
typedef struct
{
  /* every phase result, as it comes */
  void (*item_done) (MaBatch *batch, MaPhaseResult *result, gpointer user_data);
  /* ma_batch_add_named_thaw could not add the thaw of NAME (detail says why) */
  void (*thaw_not_run) (MaBatch *batch, const char *name, const char *detail, gpointer user_data);
} MaBatchObserver;

struct _MaBatch
{
  char *state_dir;  /* handed to the plugins */
  const MaBatchObserver *observer;
  gpointer observer_data;
  MaPluginSet *set; /* for ordering; NULL runs everything at once */
  MaPluginPhase phase;
  gboolean reverse;
  gboolean stop_on_failure;
  gboolean stopped;
  char *operation;
  guint lease_seconds;
  GPtrArray *items; /* MaBatchItem* */
  guint running;
  gint64 started;
  MaBatchFunc done;
  MaBatchWaveFunc starting; /* set it before ma_batch_start: called before each wave starts */
  gpointer user_data;
  /* a thaw of named plugins (a retry or a replay), besides the items: */
  GPtrArray *held_back;       /* names present but unable to run their thaw now: still pending */
  GString *held_back_failures; /* "NAME: cannot run now: WHY; …" */
  GPtrArray *dropped;         /* names whose manifest no longer exists: given up */
};

/* set: the order (NULL runs every item at once); operation and lease_seconds are handed to
 * the plugins. observer (may be NULL) is not copied. */
MaBatch *ma_batch_new (MaPluginSet *set, MaPluginPhase phase, const char *operation,
                       guint lease_seconds, const char *state_dir,
                       const MaBatchObserver *observer, gpointer observer_data);
void ma_batch_free (MaBatch *batch);
void ma_batch_add (MaBatch *batch, MaPlugin *plugin, MaPluginProcess **session);
/* Runs the items; done is called once, when nothing runs and nothing more can start
 * (at once for an empty batch). The batch stays the caller's to free. */
void ma_batch_start (MaBatch *batch, MaBatchFunc done, gpointer user_data);
/* The phase results so far, in item order. */
JsonArray *ma_batch_results (MaBatch *batch);
MaBatchItem *ma_batch_first_failure (MaBatch *batch);
/* Add the thaw of the plugin NAME, looked up in set as installed now. A plugin whose
 * manifest no longer exists is dropped (said so: never counted as thawed); one present but
 * unable to run its oneshot thaw is held back, still pending, and counted as a failure. */
void ma_batch_add_named_thaw (MaBatch *batch, MaPluginSet *set, const char *name);

/* "a, b, c" and ["a", "b", "c"] of an array of names. */
char *ma_quiesce_join_names (GPtrArray *names);
JsonArray *ma_quiesce_names_to_json (GPtrArray *names);

G_END_DECLS
