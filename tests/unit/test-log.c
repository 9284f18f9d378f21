/* test-log.c — the log writer against a journal socket nobody reads and a pipe nobody drains:
 * calls return, records are dropped and counted, then reported; the native protocol parses. */
#include <glib.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#define MANY 4096

typedef struct
{
  char *dir;
  char *path;
  int sock;
} Journal;

static void
journal_setup (Journal *j, gconstpointer data)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  g_autoptr(GError) error = NULL;

  j->dir = g_dir_make_tmp ("ma-log-XXXXXX", &error);
  g_assert_no_error (error);
  j->path = g_build_filename (j->dir, "journal.sock", NULL);
  g_assert_cmpuint (strlen (j->path), <, sizeof addr.sun_path);
  strcpy (addr.sun_path, j->path);
  j->sock = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  g_assert_cmpint (j->sock, >=, 0);
  g_assert_cmpint (bind (j->sock, (struct sockaddr *) &addr, sizeof addr), ==, 0);
  g_setenv ("MA_JOURNAL_SOCKET", j->path, TRUE);
  ma_log_configure (MA_LOG_MODE_JOURNAL, -1, -1);
}

static void
journal_teardown (Journal *j, gconstpointer data)
{
  ma_log_configure (MA_LOG_MODE_STREAM, -1, -1);
  g_unsetenv ("MA_JOURNAL_SOCKET");
  close (j->sock);
  g_unlink (j->path);
  g_rmdir (j->dir);
  g_free (j->path);
  g_free (j->dir);
}

/* What g_log_structured_standard () passes, with a domain. */
static void
log_record (GLogLevelFlags level, const char *message)
{
  const GLogField fields[] = {
    { "PRIORITY", level == G_LOG_LEVEL_WARNING ? "4" : level == G_LOG_LEVEL_DEBUG ? "7" : "5", -1 },
    { "CODE_FILE", "test-log.c", -1 },
    { "CODE_LINE", "42", -1 },
    { "CODE_FUNC", "log_record", -1 },
    { "MESSAGE", message, -1 },
    { "GLIB_DOMAIN", "ma-test", -1 },
  };

  g_assert_cmpint (ma_log_writer (level, fields, G_N_ELEMENTS (fields), NULL), ==,
                   G_LOG_WRITER_HANDLED);
}

/* One datagram in journald's native protocol: KEY=value\n, or KEY\n <le64 length> value \n. */
static GHashTable *
parse_native (const char *buf, gsize len)
{
  g_autoptr(GHashTable) record = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  gsize pos = 0;

  while (pos < len)
    {
      const char *line = buf + pos;
      const char *nl = memchr (line, '\n', len - pos);
      const char *eq;

      g_assert_nonnull (nl);
      eq = memchr (line, '=', (gsize) (nl - line));
      if (eq != NULL)
        {
          g_hash_table_insert (record, g_strndup (line, (gsize) (eq - line)),
                               g_strndup (eq + 1, (gsize) (nl - eq - 1)));
          pos = (gsize) (nl - buf) + 1;
        }
      else
        {
          guint64 le, size;
          gsize start = (gsize) (nl - buf) + 1 + sizeof le;

          g_assert_cmpuint (start, <=, len);
          memcpy (&le, nl + 1, sizeof le);
          size = GUINT64_FROM_LE (le);
          g_assert_cmpuint (start + size + 1, <=, len);
          g_assert_cmpint (buf[start + size], ==, '\n');
          g_hash_table_insert (record, g_strndup (line, (gsize) (nl - line)),
                               g_strndup (buf + start, size));
          pos = start + size + 1;
        }
    }
  return g_steal_pointer (&record);
}

/* The next datagram, parsed; NULL when none is queued. raw (optional) gets its bytes. */
static GHashTable *
journal_next (Journal *j, GBytes **raw)
{
  static char buf[256 * 1024];
  gssize n = recv (j->sock, buf, sizeof buf, MSG_DONTWAIT);

  if (n < 0)
    {
      g_assert_true (errno == EAGAIN || errno == EWOULDBLOCK);
      return NULL;
    }
  if (raw != NULL)
    *raw = g_bytes_new (buf, (gsize) n);
  return parse_native (buf, (gsize) n);
}

static void
test_journal_full_queue (Journal *j, gconstpointer data)
{
  g_autoptr(GHashTable) first = NULL;
  g_autoptr(GBytes) first_raw = NULL;
  g_autofree char *notice_text = NULL;
  g_autofree char *dropped_text = NULL;
  guint64 dropped;
  guint received = 1;

  /* more records than the socket queue holds, never read: each call returns (or this hangs) */
  log_record (G_LOG_LEVEL_WARNING, "first line\nsecond line");
  for (guint i = 1; i < MANY; i++)
    {
      g_autofree char *message = g_strdup_printf ("record %u", i);
      log_record (G_LOG_LEVEL_MESSAGE, message);
    }
  dropped = ma_log_dropped_pending ();
  g_assert_cmpuint (dropped, >, 0);
  g_assert_cmpuint (ma_log_dropped_total (), ==, dropped);

  first = journal_next (j, &first_raw);
  g_assert_nonnull (first);
  g_assert_cmpstr (g_hash_table_lookup (first, "MESSAGE"), ==, "first line\nsecond line");
  /* a value with a newline goes in the binary form */
  g_assert_nonnull (g_strstr_len (g_bytes_get_data (first_raw, NULL),
                                  (gssize) g_bytes_get_size (first_raw), "\nMESSAGE\n"));
  g_assert_cmpstr (g_hash_table_lookup (first, "PRIORITY"), ==, "4");
  g_assert_cmpstr (g_hash_table_lookup (first, "GLIB_DOMAIN"), ==, "ma-test");
  g_assert_cmpstr (g_hash_table_lookup (first, "SYSLOG_IDENTIFIER"), ==, "migration-agent");
  g_assert_cmpstr (g_hash_table_lookup (first, "CODE_FILE"), ==, "test-log.c");
  g_assert_cmpstr (g_hash_table_lookup (first, "CODE_LINE"), ==, "42");
  g_assert_cmpstr (g_hash_table_lookup (first, "CODE_FUNC"), ==, "log_record");

  /* the rest arrived in order, none twice; together with the dropped ones: all of them */
  for (;;)
    {
      g_autoptr(GHashTable) record = journal_next (j, NULL);
      g_autofree char *expected = NULL;

      if (record == NULL)
        break;
      expected = g_strdup_printf ("record %u", received);
      g_assert_cmpstr (g_hash_table_lookup (record, "MESSAGE"), ==, expected);
      g_assert_cmpstr (g_hash_table_lookup (record, "PRIORITY"), ==, "5");
      received++;
    }
  g_assert_cmpuint (received + dropped, ==, MANY);

  /* drained: the next record comes after one notice with the count */
  log_record (G_LOG_LEVEL_MESSAGE, "after the drain");
  {
    g_autoptr(GHashTable) notice = journal_next (j, NULL);
    g_autoptr(GHashTable) after = journal_next (j, NULL);
    g_autoptr(GHashTable) none = journal_next (j, NULL);

    notice_text = g_strdup_printf ("%" G_GUINT64_FORMAT
                                   " log messages dropped while the journal was not reading",
                                   dropped);
    dropped_text = g_strdup_printf ("%" G_GUINT64_FORMAT, dropped);
    g_assert_nonnull (notice);
    g_assert_cmpstr (g_hash_table_lookup (notice, "MESSAGE"), ==, notice_text);
    g_assert_cmpstr (g_hash_table_lookup (notice, "MA_LOG_DROPPED"), ==, dropped_text);
    g_assert_cmpstr (g_hash_table_lookup (notice, "PRIORITY"), ==, "4");
    g_assert_cmpstr (g_hash_table_lookup (notice, "SYSLOG_IDENTIFIER"), ==, "migration-agent");
    g_assert_nonnull (after);
    g_assert_cmpstr (g_hash_table_lookup (after, "MESSAGE"), ==, "after the drain");
    g_assert_null (none);
  }
  g_assert_cmpuint (ma_log_dropped_pending (), ==, 0);
  g_assert_cmpuint (ma_log_dropped_total (), ==, dropped);
}

static void
test_journal_truncates (Journal *j, gconstpointer data)
{
  g_autofree char *big = g_malloc (256 * 1024 + 1);
  g_autoptr(GHashTable) record = NULL;
  const char *message;

  memset (big, 'x', 256 * 1024);
  big[256 * 1024] = '\0';
  log_record (G_LOG_LEVEL_WARNING, big);
  g_assert_cmpuint (ma_log_dropped_total (), ==, 0);
  record = journal_next (j, NULL);
  g_assert_nonnull (record);
  message = g_hash_table_lookup (record, "MESSAGE");
  g_assert_cmpuint (strlen (message), ==, MA_LOG_MESSAGE_MAX);
  g_assert_true (g_str_has_prefix (big, message));
}

static void
test_journal_absent (void)
{
  g_autofree char *dir = g_dir_make_tmp ("ma-log-XXXXXX", NULL);
  g_autofree char *path = g_build_filename (dir, "nobody-here.sock", NULL);

  g_setenv ("MA_JOURNAL_SOCKET", path, TRUE);
  ma_log_configure (MA_LOG_MODE_JOURNAL, -1, -1);
  log_record (G_LOG_LEVEL_WARNING, "into the void");
  log_record (G_LOG_LEVEL_WARNING, "and again");
  g_assert_cmpuint (ma_log_dropped_pending (), ==, 2);
  ma_log_configure (MA_LOG_MODE_STREAM, -1, -1);
  g_unsetenv ("MA_JOURNAL_SOCKET");
  g_rmdir (dir);
}

/* Everything readable from fd now. */
static GString *
drain (int fd)
{
  GString *out = g_string_new (NULL);
  char buf[65536];
  gssize n;

  while ((n = read (fd, buf, sizeof buf)) > 0)
    g_string_append_len (out, buf, n);
  g_assert_true (n == 0 || errno == EAGAIN);
  return out;
}

/* A regular file goes through the writer thread: every record lands, in order, none dropped,
 * and ma_log_flush says when the queue is empty (the call itself waits up to 100 ms for its
 * record, which a loaded or valgrind run may exceed, so the file is read after a flush).
 * A file on a frozen filesystem is the integration test /freeze-guard/log-on-frozen-fs. */
static void
test_stream_regular_file (void)
{
  g_autofree char *path = NULL;
  g_autofree char *text = NULL;
  const char *at = NULL;
  int fd;

  fd = g_file_open_tmp ("ma-test-log-XXXXXX", &path, NULL);
  g_assert_cmpint (fd, >=, 0);
  ma_log_configure (MA_LOG_MODE_STREAM, fd, fd);
  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *message = g_strdup_printf ("file record %u.", i);
      g_autofree char *now = NULL;

      log_record (G_LOG_LEVEL_MESSAGE, message);
      g_assert_true (ma_log_flush (10000));
      g_assert_true (g_file_get_contents (path, &now, NULL, NULL));
      g_assert_nonnull (strstr (now, message));
    }
  g_assert_cmpuint (ma_log_dropped_total (), ==, 0);
  g_assert_true (g_file_get_contents (path, &text, NULL, NULL));
  at = text;
  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *message = g_strdup_printf ("file record %u.", i);
      at = strstr (at, message);
      g_assert_nonnull (at);
    }
  ma_log_configure (MA_LOG_MODE_STREAM, -1, -1);
  close (fd);
  g_unlink (path);
}

static void
test_stream_full_pipe (void)
{
  g_autoptr(GString) before = NULL;
  g_autoptr(GString) after = NULL;
  g_autofree char *notice = NULL;
  const char *at_notice, *at_after;
  int fds[2];
  guint64 dropped;

  g_assert_cmpint (pipe2 (fds, O_CLOEXEC), ==, 0);
  g_assert_cmpint (fcntl (fds[0], F_SETFL, O_NONBLOCK), ==, 0); /* the reader is ours */
  ma_log_configure (MA_LOG_MODE_STREAM, fds[1], fds[1]);

  for (guint i = 0; i < MANY; i++)
    {
      g_autofree char *message = g_strdup_printf ("stream record %u: %0100u", i, i);
      log_record (G_LOG_LEVEL_MESSAGE, message);
    }
  dropped = ma_log_dropped_pending ();
  g_assert_cmpuint (dropped, >, 0);

  before = drain (fds[0]);
  g_assert_nonnull (strstr (before->str, "stream record 0: "));
  g_assert_null (strstr (before->str, "dropped"));

  log_record (G_LOG_LEVEL_MESSAGE, "after the drain");
  after = drain (fds[0]);
  notice = g_strdup_printf ("%" G_GUINT64_FORMAT
                            " log messages dropped while the log output was not writable",
                            dropped);
  at_notice = strstr (after->str, notice);
  at_after = strstr (after->str, "after the drain");
  g_assert_nonnull (at_notice);
  g_assert_nonnull (at_after);
  g_assert_true (at_notice < at_after);
  g_assert_cmpuint (ma_log_dropped_pending (), ==, 0);

  ma_log_configure (MA_LOG_MODE_STREAM, -1, -1);
  close (fds[0]);
  close (fds[1]);
}

static void
test_stream_debug_filter (void)
{
  g_autoptr(GString) quiet = NULL;
  g_autoptr(GString) verbose = NULL;
  int fds[2];

  g_assert_cmpint (pipe2 (fds, O_CLOEXEC | O_NONBLOCK), ==, 0);
  ma_log_configure (MA_LOG_MODE_STREAM, fds[1], fds[1]);

  g_unsetenv ("G_MESSAGES_DEBUG");
  log_record (G_LOG_LEVEL_DEBUG, "hidden debug");
  quiet = drain (fds[0]);
  g_assert_cmpuint (quiet->len, ==, 0);

  g_setenv ("G_MESSAGES_DEBUG", "all", TRUE); /* what --verbose sets */
  log_record (G_LOG_LEVEL_DEBUG, "shown debug");
  verbose = drain (fds[0]);
  g_assert_nonnull (strstr (verbose->str, "shown debug"));
  g_assert_cmpuint (ma_log_dropped_total (), ==, 0);
  g_unsetenv ("G_MESSAGES_DEBUG");

  ma_log_configure (MA_LOG_MODE_STREAM, -1, -1);
  close (fds[0]);
  close (fds[1]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_unsetenv ("G_MESSAGES_DEBUG");

  g_test_add ("/log/journal-full-queue", Journal, NULL, journal_setup, test_journal_full_queue,
              journal_teardown);
  g_test_add ("/log/journal-truncates", Journal, NULL, journal_setup, test_journal_truncates,
              journal_teardown);
  g_test_add_func ("/log/journal-absent", test_journal_absent);
  g_test_add_func ("/log/stream-full-pipe", test_stream_full_pipe);
  g_test_add_func ("/log/stream-regular-file", test_stream_regular_file);
  g_test_add_func ("/log/stream-debug-filter", test_stream_debug_filter);
  return g_test_run ();
}
