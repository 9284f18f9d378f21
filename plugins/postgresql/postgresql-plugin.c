/* postgresql-plugin.c — the PostgreSQL quiesce plugin (oneshot): check for long transactions
 * and replication trouble, CHECKPOINT on quiesce, a probe row in a temporary table on validate. */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "plugin-kit.h"

/* A transaction open longer than this fails the check (PG_LONG_TRANSACTION_SECONDS). */
#define PG_DEFAULT_LONG_TRANSACTION_SECONDS 60
/* Shortest connect timeout libpq accepts that still means something. */
#define PG_MIN_CONNECT_SECONDS 2
/* Smallest statement budget: below it CHECKPOINT cannot finish anyway. */
#define PG_MIN_STATEMENT_MS 1000

typedef struct
{
  gint64 long_transaction_seconds;
  gint64 max_replication_lag_bytes; /* 0: not checked */
  gboolean require_streaming;       /* a standby must stream from its primary */
} PgSettings;

static void
pg_conn_finish (PGconn *conn)
{
  if (conn != NULL)
    PQfinish (conn);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PGconn, pg_conn_finish)

static void
pg_result_clear (PGresult *result)
{
  if (result != NULL)
    PQclear (result);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (PGresult, pg_result_clear)

static gboolean
load_settings (PgSettings *settings, GString *detail)
{
  g_autoptr(GError) error = NULL;

  if (!ma_kit_env_int ("PG_LONG_TRANSACTION_SECONDS", PG_DEFAULT_LONG_TRANSACTION_SECONDS,
                       &settings->long_transaction_seconds, &error)
      || !ma_kit_env_int ("PG_MAX_REPLICATION_LAG_BYTES", 0,
                          &settings->max_replication_lag_bytes, &error)
      || !ma_kit_env_bool ("PG_REQUIRE_STREAMING", FALSE, &settings->require_streaming, &error))
    {
      g_string_append (detail, error->message);
      return FALSE;
    }
  return TRUE;
}

static void
append_pq_error (GString *detail, const char *what, PGconn *conn)
{
  g_autofree char *message = g_strdup (PQerrorMessage (conn));

  g_string_append_printf (detail, "%s failed: %s", what, g_strchomp (message));
}

/* Connection parameters are libpq's own environment (PGHOST, PGPORT, PGUSER, PGDATABASE,
 * PGPASSFILE, PGSSLMODE...); only the timeouts come from the phase's budget. */
static PGconn *
connect_within (const MaKitRequest *request, GString *detail)
{
  gint64 budget_ms = ma_kit_request_remaining_ms (request, PG_MIN_STATEMENT_MS);
  g_autofree char *connect_timeout =
    g_strdup_printf ("%" G_GINT64_FORMAT, MAX (budget_ms / 1000, PG_MIN_CONNECT_SECONDS));
  g_autofree char *options =
    g_strdup_printf ("-c statement_timeout=%" G_GINT64_FORMAT, budget_ms);
  const char *keywords[] = { "connect_timeout", "options", "application_name",
                             "fallback_application_name", NULL };
  const char *values[] = { connect_timeout, options, "migration-agent", "migration-agent", NULL };
  g_autoptr(PGconn) conn = PQconnectdbParams (keywords, values, TRUE);

  if (PQstatus (conn) != CONNECTION_OK)
    {
      append_pq_error (detail, "connect", conn);
      return NULL;
    }
  return g_steal_pointer (&conn);
}

/* Run a query returning rows; NULL (detail set) on failure. */
static PGresult *
query (PGconn *conn, const char *sql, int n_params, const char *const *params, GString *detail)
{
  g_autoptr(PGresult) result = PQexecParams (conn, sql, n_params, NULL, params, NULL, NULL, 0);
  ExecStatusType status = PQresultStatus (result);

  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK)
    {
      append_pq_error (detail, sql, conn);
      return NULL;
    }
  return g_steal_pointer (&result);
}

static gboolean
check_long_transactions (PGconn *conn, const PgSettings *settings, GString *detail)
{
  g_autofree char *threshold = g_strdup_printf ("%" G_GINT64_FORMAT,
                                                settings->long_transaction_seconds);
  const char *params[] = { threshold };
  g_autoptr(PGresult) result = query (
    conn,
    "SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(state, ''),"
    "       extract(epoch FROM now() - xact_start)::bigint,"
    "       left(regexp_replace(coalesce(query, ''), '\\s+', ' ', 'g'), 60)"
    "  FROM pg_stat_activity"
    " WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()"
    "   AND backend_type = 'client backend'"
    "   AND now() - xact_start >= make_interval(secs => $1::double precision)"
    " ORDER BY xact_start",
    1, params, detail);

  if (result == NULL)
    return FALSE;
  if (PQntuples (result) == 0)
    {
      g_string_append_printf (detail, "no transaction open for %s s or more",
                              threshold);
      return TRUE;
    }
  g_string_append_printf (detail, "%d transaction(s) open for %s s or more:",
                          PQntuples (result), threshold);
  for (int row = 0; row < PQntuples (result); row++)
    g_string_append_printf (detail, "%s pid %s (%s@%s, %s, %s s: %s)", row > 0 ? ";" : "",
                            PQgetvalue (result, row, 0), PQgetvalue (result, row, 1),
                            PQgetvalue (result, row, 2), PQgetvalue (result, row, 3),
                            PQgetvalue (result, row, 4), PQgetvalue (result, row, 5));
  return FALSE;
}

static gboolean
check_standby (PGconn *conn, const PgSettings *settings, GString *detail)
{
  g_autoptr(PGresult) result =
    query (conn, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver LIMIT 1), 'none')",
           0, NULL, detail);

  if (result == NULL)
    return FALSE;
  g_string_append_printf (detail, "standby, WAL receiver %s", PQgetvalue (result, 0, 0));
  if (settings->require_streaming && g_strcmp0 (PQgetvalue (result, 0, 0), "streaming") != 0)
    {
      g_string_append (detail, " (PG_REQUIRE_STREAMING: not streaming)");
      return FALSE;
    }
  return TRUE;
}

static gboolean
check_primary (PGconn *conn, const PgSettings *settings, GString *detail)
{
  g_autoptr(PGresult) standbys = query (
    conn,
    "SELECT count(*),"
    "       count(*) FILTER (WHERE state = 'streaming'),"
    "       count(*) FILTER (WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum')),"
    "       coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0)::bigint,"
    "       current_setting('synchronous_standby_names')"
    "  FROM pg_stat_replication",
    0, NULL, detail);
  gint64 lag;
  gboolean ok = TRUE;

  if (standbys == NULL)
    return FALSE;
  lag = g_ascii_strtoll (PQgetvalue (standbys, 0, 3), NULL, 10);
  g_string_append_printf (detail, "primary, %s standby(s), %s streaming, %s synchronous, "
                          "replay lag %" G_GINT64_FORMAT " bytes",
                          PQgetvalue (standbys, 0, 0), PQgetvalue (standbys, 0, 1),
                          PQgetvalue (standbys, 0, 2), lag);
  /* Commits wait for a synchronous standby: without one streaming, writers hang already. */
  if (*PQgetvalue (standbys, 0, 4) != '\0' && g_strcmp0 (PQgetvalue (standbys, 0, 2), "0") == 0)
    {
      g_string_append_printf (detail, "; synchronous_standby_names='%s' but no synchronous "
                              "standby is streaming", PQgetvalue (standbys, 0, 4));
      ok = FALSE;
    }
  if (settings->max_replication_lag_bytes > 0 && lag > settings->max_replication_lag_bytes)
    {
      g_string_append_printf (detail, "; lag above PG_MAX_REPLICATION_LAG_BYTES=%" G_GINT64_FORMAT,
                              settings->max_replication_lag_bytes);
      ok = FALSE;
    }
  return ok;
}

static gboolean
run_check (PGconn *conn, const PgSettings *settings, GString *detail)
{
  g_autoptr(PGresult) recovery = query (conn, "SELECT pg_is_in_recovery()", 0, NULL, detail);
  gboolean transactions_ok;
  gboolean replication_ok;

  if (recovery == NULL)
    return FALSE;
  transactions_ok = check_long_transactions (conn, settings, detail);
  g_string_append (detail, "; ");
  if (g_strcmp0 (PQgetvalue (recovery, 0, 0), "t") == 0)
    replication_ok = check_standby (conn, settings, detail);
  else
    replication_ok = check_primary (conn, settings, detail);
  return transactions_ok && replication_ok;
}

static gboolean
run_quiesce (PGconn *conn, GString *detail)
{
  gint64 started = g_get_monotonic_time ();
  g_autoptr(PGresult) result = query (conn, "CHECKPOINT", 0, NULL, detail);

  if (result == NULL)
    return FALSE;
  g_string_append_printf (detail, "checkpoint done in %" G_GINT64_FORMAT " ms",
                          (g_get_monotonic_time () - started) / 1000);
  return TRUE;
}

static gboolean
run_validate (PGconn *conn, GString *detail)
{
  g_autofree char *token = g_uuid_string_random ();
  const char *params[] = { token };
  g_autoptr(PGresult) recovery = query (conn, "SELECT pg_is_in_recovery()", 0, NULL, detail);
  g_autoptr(PGresult) created = NULL;
  g_autoptr(PGresult) inserted = NULL;
  g_autoptr(PGresult) selected = NULL;

  if (recovery == NULL)
    return FALSE;
  if (g_strcmp0 (PQgetvalue (recovery, 0, 0), "t") == 0)
    {
      /* A standby is read-only: reaching it and running a query is all there is to prove. */
      g_string_append (detail, "standby answers queries");
      return TRUE;
    }
  created = query (conn, "CREATE TEMPORARY TABLE migration_agent_probe (token text)",
                   0, NULL, detail);
  if (created == NULL)
    return FALSE;
  inserted = query (conn, "INSERT INTO migration_agent_probe VALUES ($1)", 1, params, detail);
  if (inserted == NULL)
    return FALSE;
  selected = query (conn, "SELECT token FROM migration_agent_probe", 0, NULL, detail);
  if (selected == NULL)
    return FALSE;
  if (PQntuples (selected) != 1 || g_strcmp0 (PQgetvalue (selected, 0, 0), token) != 0)
    {
      g_string_append (detail, "probe row read back differs from the row written");
      return FALSE;
    }
  g_string_append (detail, "probe row written and read back");
  return TRUE;
}

int
main (int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaKitRequest) request = NULL;
  g_autoptr(GString) detail = g_string_new (NULL);
  g_autoptr(PGconn) conn = NULL;
  PgSettings settings = { 0 };
  gboolean ok = FALSE;

  g_set_prgname ("postgresql");
  request = ma_kit_oneshot_request (argc, argv, &error);
  if (request == NULL)
    return ma_kit_oneshot_finish (FALSE, error->message);
  if (request->phase == MA_KIT_PHASE_THAW)
    return ma_kit_oneshot_finish (TRUE, "nothing to release: a checkpoint holds no lock");
  if (!load_settings (&settings, detail))
    return ma_kit_oneshot_finish (FALSE, detail->str);

  conn = connect_within (request, detail);
  if (conn == NULL)
    return ma_kit_oneshot_finish (FALSE, detail->str);

  switch (request->phase)
    {
    case MA_KIT_PHASE_CHECK:
      ok = run_check (conn, &settings, detail);
      break;
    case MA_KIT_PHASE_QUIESCE:
      ok = run_quiesce (conn, detail);
      break;
    case MA_KIT_PHASE_VALIDATE:
      ok = run_validate (conn, detail);
      break;
    case MA_KIT_PHASE_THAW:
    case MA_KIT_PHASE_RENEW: /* not declared in its manifest */
    case MA_KIT_PHASE_INVALID:
    default:
      g_string_append (detail, "unexpected phase");
      break;
    }
  return ma_kit_oneshot_finish (ok, detail->str);
}
