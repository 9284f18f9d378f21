/* mariadb-plugin.c — the MariaDB/MySQL quiesce plugin (session): holds FLUSH TABLES WITH READ
 * LOCK from quiesce to thaw in a session kept alive for the lease (renewed by renew), refuses
 * (or kills) long statements first, releases at stdin EOF. */
#include <stdio.h>
#include <string.h>

#include <errmsg.h>
#include <mysql.h>

#include "plugin-kit.h"

/* Longest statement excerpt put in a detail. */
#define MARIADB_QUERY_EXCERPT 80
/* Smallest budget for connecting and for lock_wait_timeout (it counts whole seconds). */
#define MARIADB_MIN_BUDGET_MS 1000
/* How long the locked session may stay idle beyond the lease (MARIADB_IDLE_MARGIN_SECONDS):
 * the agent's lease starts only once every plugin has quiesced, so the plugins ordered after
 * this one (each up to its QuiesceTimeout) come first, and the thaw comes after the lease. */
#define MARIADB_DEFAULT_IDLE_MARGIN_SECONDS 600
/* The largest wait_timeout the server accepts. */
#define MARIADB_MAX_WAIT_TIMEOUT 31536000
/* The lease assumed when the request carries none (a plugin run by hand): the agent's longest. */
#define MARIADB_UNLEASED_SECONDS 86400

typedef enum
{
  LONG_QUERY_REFUSE,
  LONG_QUERY_KILL,
} LongQueryAction;

typedef struct
{
  MYSQL *conn;
  gboolean locked;
  LongQueryAction long_query_action;
  gint64 long_query_seconds; /* < 0: the lock's own budget */
  gint64 idle_margin_seconds;
} Mariadb;

static void
mysql_result_free (MYSQL_RES *result)
{
  if (result != NULL)
    mysql_free_result (result);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MYSQL_RES, mysql_result_free)

static gboolean
load_settings (Mariadb *self, GString *detail)
{
  g_autoptr(GError) error = NULL;
  const char *action = ma_kit_env ("MARIADB_LONG_QUERY_ACTION", "refuse");

  if (g_strcmp0 (action, "refuse") == 0)
    self->long_query_action = LONG_QUERY_REFUSE;
  else if (g_strcmp0 (action, "kill") == 0)
    self->long_query_action = LONG_QUERY_KILL;
  else
    {
      g_string_append_printf (detail, "MARIADB_LONG_QUERY_ACTION=%s: expected refuse or kill",
                              action);
      return FALSE;
    }
  if (!ma_kit_env_int ("MARIADB_LONG_QUERY_SECONDS", -1, &self->long_query_seconds, &error)
      || !ma_kit_env_int ("MARIADB_IDLE_MARGIN_SECONDS", MARIADB_DEFAULT_IDLE_MARGIN_SECONDS,
                          &self->idle_margin_seconds, &error))
    {
      g_string_append (detail, error->message);
      return FALSE;
    }
  if (self->idle_margin_seconds < 0)
    {
      g_string_append_printf (detail, "MARIADB_IDLE_MARGIN_SECONDS=%" G_GINT64_FORMAT
                              ": must not be negative", self->idle_margin_seconds);
      return FALSE;
    }
  return TRUE;
}

static void
disconnect (Mariadb *self)
{
  g_clear_pointer (&self->conn, mysql_close);
  self->locked = FALSE;
}

/* Connection settings: MARIADB_SOCKET, or MARIADB_HOST and MARIADB_PORT; MARIADB_USER and
 * MARIADB_PASSWORD, or an option file (MARIADB_DEFAULTS_FILE, group [client]). */
static gboolean
ensure_connected (Mariadb *self, const MaKitRequest *request, GString *detail)
{
  unsigned int connect_timeout;
  const char *defaults_file = ma_kit_env ("MARIADB_DEFAULTS_FILE", NULL);
  const char *socket_path = ma_kit_env ("MARIADB_SOCKET", NULL);
  const char *host = ma_kit_env ("MARIADB_HOST", NULL);
  gint64 port = 0;
  g_autoptr(GError) error = NULL;

  if (self->conn != NULL && mysql_ping (self->conn) == 0)
    return TRUE;
  if (self->conn != NULL && self->locked)
    {
      /* The server dropped the session: the lock went with it. */
      g_string_append_printf (detail, "connection lost while holding the lock: %s; ",
                              mysql_error (self->conn));
    }
  disconnect (self);

  if (!ma_kit_env_int ("MARIADB_PORT", 0, &port, &error) || port > G_MAXUINT16)
    {
      g_string_append (detail, error != NULL ? error->message : "MARIADB_PORT out of range");
      return FALSE;
    }
  if (socket_path == NULL && host == NULL && defaults_file == NULL)
    socket_path = "/run/mysqld/mysqld.sock";

  self->conn = mysql_init (NULL);
  connect_timeout = (unsigned int) MAX (ma_kit_request_remaining_ms (request,
                                                                     MARIADB_MIN_BUDGET_MS) / 1000,
                                        1);
  mysql_optionsv (self->conn, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
  if (defaults_file != NULL)
    {
      mysql_optionsv (self->conn, MYSQL_READ_DEFAULT_FILE, defaults_file);
      mysql_optionsv (self->conn, MYSQL_READ_DEFAULT_GROUP, "client");
    }
  if (mysql_real_connect (self->conn, host, ma_kit_env ("MARIADB_USER", NULL),
                          ma_kit_env ("MARIADB_PASSWORD", NULL), NULL, (unsigned int) port,
                          socket_path, 0) == NULL)
    {
      g_string_append_printf (detail, "cannot connect: %s", mysql_error (self->conn));
      disconnect (self);
      return FALSE;
    }
  /* Set after connecting, as an option file may ask for it: a silent reconnect would carry on
   * in a new session that holds no lock. */
  mysql_optionsv (self->conn, MYSQL_OPT_RECONNECT, &(my_bool) { 0 });
  return TRUE;
}

static gboolean
execute (Mariadb *self, const char *sql, GString *detail)
{
  if (mysql_real_query (self->conn, sql, strlen (sql)) != 0)
    {
      g_string_append_printf (detail, "%s failed: %s", sql, mysql_error (self->conn));
      return FALSE;
    }
  /* Statements here return no rows; drain anyway so the connection stays usable. */
  mysql_result_free (mysql_store_result (self->conn));
  return TRUE;
}

/* The server ends a session idle for its wait_timeout (8 h by default, often much less), and
 * the read lock with it, while the agent goes on reporting "quiesced". Keep this session for
 * the lease plus the margin from its last statement: quiesce sets it, renew again from now.
 * (interactive_timeout only replaces wait_timeout at connect, for interactive clients.) */
static gboolean
keep_session (Mariadb *self, const MaKitRequest *request, gint64 *seconds, GString *detail)
{
  gint64 lease = request->lease_seconds > 0 ? request->lease_seconds : MARIADB_UNLEASED_SECONDS;
  g_autofree char *sql = NULL;

  /* Each term clamped first: no overflow whatever the request says. */
  *seconds = CLAMP (MIN (lease, MARIADB_MAX_WAIT_TIMEOUT)
                    + MIN (self->idle_margin_seconds, MARIADB_MAX_WAIT_TIMEOUT),
                    1, MARIADB_MAX_WAIT_TIMEOUT);
  sql = g_strdup_printf ("SET SESSION wait_timeout = %" G_GINT64_FORMAT, *seconds);
  return execute (self, sql, detail);
}

/* Statements that have run for threshold seconds or more; FTWRL would wait behind them.
 * Returns FALSE (detail set) when they cannot be listed. */
static gboolean
find_long_statements (Mariadb *self, gint64 threshold, GPtrArray *ids, GString *listing,
                      GString *detail)
{
  g_autofree char *sql = g_strdup_printf (
    "SELECT ID, USER, TIME, LEFT(REPLACE(REPLACE(COALESCE(INFO, ''), '\\n', ' '), '\\r', ' '), %d)"
    "  FROM information_schema.PROCESSLIST"
    " WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL"
    "   AND COMMAND NOT IN ('Sleep', 'Daemon', 'Binlog Dump', 'Binlog Dump GTID',"
    "                       'Slave_IO', 'Slave_SQL', 'Slave_worker', 'Killed')"
    "   AND TIME >= %" G_GINT64_FORMAT " ORDER BY TIME DESC",
    MARIADB_QUERY_EXCERPT, threshold);
  g_autoptr(MYSQL_RES) result = NULL;
  MYSQL_ROW row;

  if (mysql_real_query (self->conn, sql, strlen (sql)) != 0
      || (result = mysql_store_result (self->conn)) == NULL)
    {
      g_string_append_printf (detail, "listing running statements failed: %s",
                              mysql_error (self->conn));
      return FALSE;
    }
  while ((row = mysql_fetch_row (result)) != NULL)
    {
      g_ptr_array_add (ids, g_strdup (row[0]));
      g_string_append_printf (listing, "%sid %s (%s, %s s: %s)", listing->len > 0 ? "; " : "",
                              row[0], row[1] != NULL ? row[1] : "", row[2] != NULL ? row[2] : "",
                              row[3] != NULL ? row[3] : "");
    }
  return TRUE;
}

/* Refuse or kill what would keep the lock from being taken in time. */
static gboolean
clear_long_statements (Mariadb *self, gint64 lock_wait_seconds, gboolean dry_run,
                       GString *detail)
{
  gint64 threshold = self->long_query_seconds >= 0 ? self->long_query_seconds : lock_wait_seconds;
  g_autoptr(GPtrArray) ids = g_ptr_array_new_with_free_func (g_free);
  g_autoptr(GString) listing = g_string_new (NULL);

  if (!find_long_statements (self, threshold, ids, listing, detail))
    return FALSE;
  if (ids->len == 0)
    return TRUE;
  if (self->long_query_action == LONG_QUERY_REFUSE)
    {
      g_string_append_printf (detail, "%u statement(s) running for %" G_GINT64_FORMAT
                              " s or more would stall the read lock: %s", ids->len, threshold,
                              listing->str);
      return FALSE;
    }
  if (dry_run)
    {
      g_string_append_printf (detail, "would kill %u statement(s): %s; ", ids->len, listing->str);
      return TRUE;
    }
  for (guint i = 0; i < ids->len; i++)
    {
      g_autofree char *kill = g_strdup_printf ("KILL QUERY %s", (char *) ids->pdata[i]);
      /* Already finished is fine: the point is that it no longer runs. */
      if (mysql_real_query (self->conn, kill, strlen (kill)) != 0)
        ma_kit_log ("%s: %s", kill, mysql_error (self->conn));
    }
  ma_kit_log ("killed %u long statement(s): %s", ids->len, listing->str);
  g_string_append_printf (detail, "killed %u statement(s): %s; ", ids->len, listing->str);
  return TRUE;
}

static gboolean
run_check (Mariadb *self, const MaKitRequest *request, GString *detail)
{
  gint64 lock_wait = ma_kit_request_remaining_ms (request, MARIADB_MIN_BUDGET_MS) / 1000;

  if (!ensure_connected (self, request, detail))
    return FALSE;
  if (!clear_long_statements (self, lock_wait, TRUE, detail))
    return FALSE;
  g_string_append_printf (detail, "server %s reachable, no statement in the way",
                          mysql_get_server_info (self->conn));
  return TRUE;
}

static gboolean
run_quiesce (Mariadb *self, const MaKitRequest *request, GString *detail)
{
  gint64 started = g_get_monotonic_time ();
  gint64 lock_wait;
  gint64 kept_seconds;
  g_autofree char *set_timeout = NULL;

  if (self->locked && self->conn != NULL && mysql_ping (self->conn) == 0)
    {
      g_string_append (detail, "read lock already held");
      return TRUE;
    }
  if (!ensure_connected (self, request, detail))
    return FALSE;
  lock_wait = MAX (ma_kit_request_remaining_ms (request, MARIADB_MIN_BUDGET_MS) / 1000, 1);
  if (!clear_long_statements (self, lock_wait, FALSE, detail))
    return FALSE;
  /* Recomputed: listing and killing took some of the budget. */
  lock_wait = MAX (ma_kit_request_remaining_ms (request, MARIADB_MIN_BUDGET_MS) / 1000, 1);
  set_timeout = g_strdup_printf ("SET SESSION lock_wait_timeout = %" G_GINT64_FORMAT, lock_wait);
  if (!execute (self, set_timeout, detail)
      || !keep_session (self, request, &kept_seconds, detail)
      || !execute (self, "FLUSH TABLES WITH READ LOCK", detail))
    return FALSE;
  self->locked = TRUE;
  g_string_append_printf (detail, "read lock held (taken in %" G_GINT64_FORMAT " ms), session "
                          "kept for %" G_GINT64_FORMAT " s idle",
                          (g_get_monotonic_time () - started) / 1000, kept_seconds);
  return TRUE;
}

/* The agent renewed its lease: keep the session (and so the lock) for the new lease from now.
 * A session the server already ended fails here, and the agent then releases the operation:
 * its thaw closes what is left. */
static gboolean
run_renew (Mariadb *self, const MaKitRequest *request, GString *detail)
{
  gint64 kept_seconds;

  if (!self->locked)
    {
      g_string_append (detail, "no lock held: nothing to renew");
      return FALSE;
    }
  if (!keep_session (self, request, &kept_seconds, detail))
    {
      unsigned int code = mysql_errno (self->conn);
      if (code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST)
        g_string_append (detail, "; the session ended, and the read lock with it");
      return FALSE;
    }
  g_string_append_printf (detail, "read lock held, session kept for %" G_GINT64_FORMAT
                          " s idle from now", kept_seconds);
  return TRUE;
}

static gboolean
release (Mariadb *self, GString *detail)
{
  if (!self->locked)
    {
      g_string_append (detail, "no lock held");
      return TRUE;
    }
  self->locked = FALSE;
  if (!execute (self, "UNLOCK TABLES", detail))
    {
      /* Closing the session releases the lock on the server whatever went wrong. */
      disconnect (self);
      g_string_append (detail, "; session closed, which releases the lock");
      return TRUE;
    }
  g_string_append (detail, "read lock released");
  return TRUE;
}

static gboolean
run_validate (Mariadb *self, const MaKitRequest *request, GString *detail)
{
  if (self->locked)
    {
      g_string_append (detail, "still quiesced: thaw first");
      return FALSE;
    }
  if (!ensure_connected (self, request, detail) || !execute (self, "SELECT 1", detail))
    return FALSE;
  g_string_append_printf (detail, "server %s answers", mysql_get_server_info (self->conn));
  return TRUE;
}

static gboolean
phase_check (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_check (self, request, detail);
}

static gboolean
phase_quiesce (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_quiesce (self, request, detail);
}

static gboolean
phase_thaw (gpointer self, const MaKitRequest *request, GString *detail)
{
  return release (self, detail);
}

static gboolean
phase_validate (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_validate (self, request, detail);
}

static gboolean
phase_renew (gpointer self, const MaKitRequest *request, GString *detail)
{
  return run_renew (self, request, detail);
}

static gboolean
configure (gpointer self, GString *detail)
{
  return load_settings (self, detail);
}

int
main (int argc, char **argv)
{
  static const MaKitSession session = {
    .configure = configure,
    .check = phase_check,
    .quiesce = phase_quiesce,
    .thaw = phase_thaw,
    .validate = phase_validate,
    .renew = phase_renew,
  };
  Mariadb self = { 0 };

  g_set_prgname ("mariadb");
  ma_kit_session_init ();
  if (mysql_library_init (0, NULL, NULL) != 0)
    {
      ma_kit_session_reply (FALSE, "cannot initialise the client library");
      return 1;
    }

  ma_kit_session_run (&session, &self);

  /* End of input, a termination signal or a vanished agent: never leave the lock behind. */
  if (self.locked)
    {
      g_autoptr(GString) detail = g_string_new (NULL);
      release (&self, detail);
      ma_kit_log ("input closed while quiesced: %s", detail->str);
    }
  disconnect (&self);
  mysql_library_end ();
  return 0;
}
