/* sqlite-plugin.c — the SQLite quiesce plugin (session): holds a write transaction
 * (BEGIN IMMEDIATE) on every configured database file from quiesce to thaw or stdin EOF. */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "plugin-kit.h"

/* Smallest busy timeout: a writer's commit in progress usually takes less. */
#define SQLITE_MIN_BUSY_MS 100

typedef struct
{
  char *path;
  sqlite3 *db;
  gboolean in_transaction;
} Database;

typedef struct
{
  GPtrArray *databases; /* of Database */
  gboolean checkpoint;  /* SQLITE_WAL_CHECKPOINT: fold the WAL into the file first */
} Sqlite;

static void
database_close (Database *database)
{
  if (database->db != NULL)
    {
      if (database->in_transaction)
        sqlite3_exec (database->db, "ROLLBACK", NULL, NULL, NULL);
      sqlite3_close_v2 (database->db);
    }
  database->db = NULL;
  database->in_transaction = FALSE;
}

static void
database_free (Database *database)
{
  database_close (database);
  g_free (database->path);
  g_free (database);
}

static gboolean
load_settings (Sqlite *self, GString *detail)
{
  g_auto(GStrv) paths = ma_kit_env_list ("SQLITE_DATABASES");
  g_autoptr(GError) error = NULL;

  if (self->databases != NULL)
    return TRUE;
  if (paths[0] == NULL)
    {
      g_string_append (detail, "SQLITE_DATABASES lists no database file");
      return FALSE;
    }
  if (!ma_kit_env_bool ("SQLITE_WAL_CHECKPOINT", FALSE, &self->checkpoint, &error))
    {
      g_string_append (detail, error->message);
      return FALSE;
    }
  self->databases = g_ptr_array_new_with_free_func ((GDestroyNotify) database_free);
  for (guint i = 0; paths[i] != NULL; i++)
    {
      Database *database = g_new0 (Database, 1);
      database->path = g_strdup (paths[i]);
      g_ptr_array_add (self->databases, database);
    }
  return TRUE;
}

static gboolean
database_open (Database *database, GString *detail)
{
  int rc;

  if (database->db != NULL)
    return TRUE;
  if (!g_path_is_absolute (database->path))
    {
      g_string_append_printf (detail, "%s: not an absolute path", database->path);
      return FALSE;
    }
  /* Never create: a missing file is a configuration error, not an empty database. */
  rc = sqlite3_open_v2 (database->path, &database->db, SQLITE_OPEN_READWRITE, NULL);
  if (rc != SQLITE_OK)
    {
      g_string_append_printf (detail, "%s: cannot open: %s", database->path,
                              database->db != NULL ? sqlite3_errmsg (database->db)
                                                   : sqlite3_errstr (rc));
      database_close (database);
      return FALSE;
    }
  return TRUE;
}

static gboolean
database_exec (Database *database, const char *sql, GString *detail)
{
  if (sqlite3_exec (database->db, sql, NULL, NULL, NULL) != SQLITE_OK)
    {
      g_string_append_printf (detail, "%s: %s: %s", database->path, sql,
                              sqlite3_errmsg (database->db));
      return FALSE;
    }
  return TRUE;
}

/* Take the write lock, waiting at most budget_ms for a writer to finish. */
static gboolean
database_begin (Database *database, gint64 budget_ms, gboolean checkpoint, GString *detail)
{
  if (database->in_transaction)
    return TRUE;
  if (!database_open (database, detail))
    return FALSE;
  sqlite3_busy_timeout (database->db, (int) MIN (budget_ms, G_MAXINT));
  if (checkpoint && !database_exec (database, "PRAGMA wal_checkpoint(TRUNCATE)", detail))
    return FALSE;
  if (!database_exec (database, "BEGIN IMMEDIATE", detail))
    return FALSE;
  database->in_transaction = TRUE;
  return TRUE;
}

static gboolean
database_end (Database *database, GString *detail)
{
  if (!database->in_transaction)
    return TRUE;
  database->in_transaction = FALSE;
  /* Nothing was written: ROLLBACK only gives the lock back. */
  if (!database_exec (database, "ROLLBACK", detail))
    {
      /* Closing the connection releases the lock whatever went wrong. */
      database_close (database);
      return FALSE;
    }
  return TRUE;
}

static guint
release_all (Sqlite *self, GString *detail)
{
  guint released = 0;

  for (guint i = self->databases != NULL ? self->databases->len : 0; i > 0; i--)
    {
      Database *database = self->databases->pdata[i - 1];
      if (database->in_transaction)
        {
          database_end (database, detail);
          released++;
        }
    }
  return released;
}

static gboolean
run_quiesce (Sqlite *self, const MaKitRequest *request, GString *detail)
{
  gint64 started = g_get_monotonic_time ();

  for (guint i = 0; i < self->databases->len; i++)
    {
      Database *database = self->databases->pdata[i];
      gint64 budget = ma_kit_request_remaining_ms (request, SQLITE_MIN_BUSY_MS);
      if (!database_begin (database, budget, self->checkpoint, detail))
        {
          /* All or nothing inside the plugin as well. */
          g_autoptr(GString) ignored = g_string_new (NULL);
          release_all (self, ignored);
          return FALSE;
        }
    }
  g_string_append_printf (detail, "write lock held on %u database(s) (taken in %" G_GINT64_FORMAT
                          " ms)", self->databases->len,
                          (g_get_monotonic_time () - started) / 1000);
  return TRUE;
}

static gboolean
run_thaw (Sqlite *self, GString *detail)
{
  g_autoptr(GString) errors = g_string_new (NULL);
  guint released = release_all (self, errors);

  g_string_append_printf (detail, "released %u database(s)", released);
  if (errors->len > 0)
    g_string_append_printf (detail, " (%s; connection closed instead)", errors->str);
  return TRUE;
}

/* check: every file opens and its write lock can be had now (then given back at once);
 * validate: the same after resume, plus a quick look at each file's structure. */
static gboolean
run_probe (Sqlite *self, const MaKitRequest *request, gboolean integrity, GString *detail)
{
  for (guint i = 0; i < self->databases->len; i++)
    {
      Database *database = self->databases->pdata[i];
      gboolean held = database->in_transaction;
      gint64 budget = ma_kit_request_remaining_ms (request, SQLITE_MIN_BUSY_MS);

      if (held)
        continue;
      if (!database_begin (database, budget / self->databases->len, FALSE, detail))
        {
          database_close (database);
          return FALSE;
        }
      database_end (database, detail);
      if (integrity && !database_exec (database, "PRAGMA quick_check(1)", detail))
        return FALSE;
      database_close (database);
    }
  g_string_append_printf (detail, "%u database(s) open and writable", self->databases->len);
  return TRUE;
}

static gboolean
phase_check (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_probe (self, request, FALSE, detail);
}

static gboolean
phase_validate (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_probe (self, request, TRUE, detail);
}

static gboolean
phase_quiesce (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_quiesce (self, request, detail);
}

static gboolean
phase_thaw (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_thaw (self, detail);
}

static gboolean
configure (gpointer self, GString *detail)
{
  return load_settings (self, detail);
}

int
main (int argc, char **argv)
{
  /* renew is not declared in its manifest */
  static const MaKitSession session = {
    .configure = configure,
    .check = phase_check,
    .quiesce = phase_quiesce,
    .thaw = phase_thaw,
    .validate = phase_validate,
  };
  Sqlite self = { 0 };

  g_set_prgname ("sqlite");
  ma_kit_session_init ();
  ma_kit_session_run (&session, &self);

  /* End of input, a termination signal or a vanished agent: give every lock back. */
  if (self.databases != NULL)
    {
      g_autoptr(GString) detail = g_string_new (NULL);
      guint released = release_all (&self, detail);
      if (released > 0)
        ma_kit_log ("input closed while quiesced: released %u database(s)", released);
      g_ptr_array_unref (self.databases);
    }
  return 0;
}
