/* log.c — the daemon's structured log writer: journald's native protocol or stderr, and never
 * blocking — a record that cannot be written at once is dropped, counted and reported later. */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MA_LOG_DEFAULT_JOURNAL_SOCKET "/run/systemd/journal/socket"
/* how long a record for a regular file may take before the writer gives up waiting for it */
#define MA_LOG_FILE_WAIT_MS 100

/* GLib's default writer blocks in sendmsg/fputs when journald stops reading (its storage on a
 * frozen /var) or nobody drains a pipe: the main loop — and the freeze guard's thaw with it —
 * would wait for the very filesystem it should thaw. Here every write is tried once, at once. */
static struct
{
  GMutex lock;
  MaLogMode mode;
  int out_fd;
  int err_fd;
  gboolean out_is_file; /* a regular file or block device: see file_write */
  gboolean err_is_file;
  int sock; /* our own datagram socket, journal mode */
  struct sockaddr_un addr;
  socklen_t addr_len;
  guint64 dropped;       /* not yet reported */
  guint64 dropped_total;
  gboolean mid_line;     /* a stream record was cut short: start the next on a new line */
  GLogLevelFlags always_fatal;
} log_state = { .mode = MA_LOG_MODE_STREAM, .out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO,
                .sock = -1 };

/* ---- fields ---- */

static const char *
level_priority (GLogLevelFlags level)
{
  if (level & G_LOG_LEVEL_ERROR)
    return "3";
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING))
    return "4";
  if (level & G_LOG_LEVEL_MESSAGE)
    return "5";
  if (level & G_LOG_LEVEL_INFO)
    return "6";
  if (level & G_LOG_LEVEL_DEBUG)
    return "7";
  return "5";
}

static gboolean
valid_journal_key (const char *key)
{
  gsize len = strlen (key);

  if (len == 0 || len > 64 || !g_ascii_isupper (key[0]))
    return FALSE;
  for (gsize i = 1; i < len; i++)
    if (!g_ascii_isupper (key[i]) && !g_ascii_isdigit (key[i]) && key[i] != '_')
      return FALSE;
  return TRUE;
}

static const char *
field_string (const GLogField *fields, gsize n_fields, const char *key)
{
  for (gsize i = 0; i < n_fields; i++)
    if (g_strcmp0 (fields[i].key, key) == 0 && fields[i].length < 0)
      return fields[i].value;
  return NULL;
}

/* A copy of the fields whose values are at most MA_LOG_MESSAGE_MAX bytes; truncated strings are
 * cut at a UTF-8 boundary and copied into *keep. */
static GLogField *
bounded_fields (const GLogField *fields, gsize n_fields, GPtrArray *keep)
{
  GLogField *out = g_new (GLogField, n_fields);

  for (gsize i = 0; i < n_fields; i++)
    {
      out[i] = fields[i];
      if (fields[i].value == NULL)
        continue;
      if (fields[i].length >= 0)
        out[i].length = MIN (fields[i].length, MA_LOG_MESSAGE_MAX);
      else if (strlen (fields[i].value) > MA_LOG_MESSAGE_MAX)
        {
          const char *value = fields[i].value;
          gsize cut = MA_LOG_MESSAGE_MAX;
          char *copy;

          while (cut > 0 && ((guchar) value[cut] & 0xC0) == 0x80)
            cut--;
          copy = g_strndup (value, cut);
          g_ptr_array_add (keep, copy);
          out[i].value = copy;
        }
    }
  return out;
}

/* ---- journal: native protocol datagrams ---- */

static void
append_journal_field (GString *record, const char *key, const char *value, gssize length)
{
  gsize len = length < 0 ? strlen (value) : (gsize) length;

  if (memchr (value, '\n', len) == NULL)
    {
      g_string_append (record, key);
      g_string_append_c (record, '=');
      g_string_append_len (record, value, len);
    }
  else
    {
      guint64 le = GUINT64_TO_LE ((guint64) len);

      g_string_append (record, key);
      g_string_append_c (record, '\n');
      g_string_append_len (record, (const char *) &le, sizeof le);
      g_string_append_len (record, value, len);
    }
  g_string_append_c (record, '\n');
}

static gboolean
journal_send (GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
  g_autoptr(GString) record = g_string_sized_new (256);
  gboolean has_priority = FALSE;

  for (gsize i = 0; i < n_fields; i++)
    {
      if (fields[i].value == NULL || !valid_journal_key (fields[i].key)
          || g_strcmp0 (fields[i].key, "SYSLOG_IDENTIFIER") == 0)
        continue;
      has_priority |= g_strcmp0 (fields[i].key, "PRIORITY") == 0;
      append_journal_field (record, fields[i].key, fields[i].value, fields[i].length);
    }
  if (!has_priority)
    append_journal_field (record, "PRIORITY", level_priority (level), -1);
  append_journal_field (record, "SYSLOG_IDENTIFIER", MA_LOG_IDENTIFIER, -1);

  return sendto (log_state.sock, record->str, record->len, MSG_DONTWAIT | MSG_NOSIGNAL,
                 (const struct sockaddr *) &log_state.addr, log_state.addr_len)
         == (gssize) record->len;
}

/* ---- stream: GLib's text lines, written only while the fd can take them ---- */

/* A regular file (or block device) always polls writable, yet its write waits as long as its
 * filesystem is frozen (or while the kernel throttles a writer over its dirty-page limit).
 * Such records go through one writer thread and a queue of at most MA_LOG_FILE_QUEUE_MAX:
 * when the thread is keeping up the caller waits at most MA_LOG_FILE_WAIT_MS for its record
 * (so the file reads in order right after a call, as with a plain write); when the thread is
 * behind, records are queued without waiting, and once the queue is full they are dropped and
 * counted, as on a full pipe. ma_log_flush waits for the queue at exit. Idle, the thread sleeps
 * on a GCond. */
#define MA_LOG_FILE_QUEUE_MAX 64

typedef struct
{
  int fd;
  gsize len;
  char text[]; /* len bytes */
} FileRecord;

static struct
{
  GMutex lock;
  GCond cond;
  GThread *thread;
  GQueue queue;  /* FileRecord, oldest first */
  gboolean busy; /* the thread is writing a record taken from the queue */
  guint64 handed, written;
} file_writer;

static gboolean
write_all (int fd, const char *buf, gsize len)
{
  while (len > 0)
    {
      gssize n = write (fd, buf, len);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        return FALSE;
      buf += n;
      len -= (gsize) n;
    }
  return TRUE;
}

static gpointer
file_writer_main (gpointer data)
{
  g_mutex_lock (&file_writer.lock);
  for (;;)
    {
      FileRecord *record;

      while (g_queue_is_empty (&file_writer.queue))
        g_cond_wait (&file_writer.cond, &file_writer.lock);
      record = g_queue_pop_head (&file_writer.queue);
      file_writer.busy = TRUE;
      g_mutex_unlock (&file_writer.lock);
      /* a record that fails (ENOSPC, EIO) is lost; the next ones are still tried */
      write_all (record->fd, record->text, record->len);
      g_free (record);
      g_mutex_lock (&file_writer.lock);
      file_writer.busy = FALSE;
      file_writer.written++;
      g_cond_broadcast (&file_writer.cond);
    }
  return NULL;
}

static gboolean
file_write (int fd, const char *buf, gsize len)
{
  gint64 deadline = g_get_monotonic_time () + MA_LOG_FILE_WAIT_MS * G_TIME_SPAN_MILLISECOND;
  FileRecord *record;
  gboolean keeping_up;
  guint64 mine;

  g_mutex_lock (&file_writer.lock);
  if (file_writer.thread == NULL)
    file_writer.thread = g_thread_try_new ("log-writer", file_writer_main, NULL, NULL);
  if (file_writer.thread == NULL || file_writer.queue.length >= MA_LOG_FILE_QUEUE_MAX)
    {
      g_mutex_unlock (&file_writer.lock);
      return FALSE;
    }
  keeping_up = !file_writer.busy && g_queue_is_empty (&file_writer.queue);
  record = g_malloc (sizeof *record + len);
  record->fd = fd;
  record->len = len;
  memcpy (record->text, buf, len);
  g_queue_push_tail (&file_writer.queue, record);
  mine = ++file_writer.handed;
  g_cond_broadcast (&file_writer.cond);
  while (keeping_up && file_writer.written < mine)
    if (!g_cond_wait_until (&file_writer.cond, &file_writer.lock, deadline))
      break;
  g_mutex_unlock (&file_writer.lock);
  return TRUE;
}

gboolean
ma_log_flush (guint timeout_ms)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_ms * G_TIME_SPAN_MILLISECOND;
  gboolean drained;

  g_mutex_lock (&file_writer.lock);
  while (file_writer.written < file_writer.handed)
    if (!g_cond_wait_until (&file_writer.cond, &file_writer.lock, deadline))
      break;
  drained = file_writer.written >= file_writer.handed;
  g_mutex_unlock (&file_writer.lock);
  return drained;
}

static gboolean
stream_write (int fd, const char *buf, gsize len)
{
  /* at most PIPE_BUF per write after a POLLOUT: a pipe with room takes that without waiting */
  while (len > 0)
    {
      struct pollfd pfd = { .fd = fd, .events = POLLOUT };
      gssize n;

      if (poll (&pfd, 1, 0) != 1 || (pfd.revents & POLLOUT) == 0
          || (pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0)
        return FALSE;
      n = write (fd, buf, MIN (len, (gsize) PIPE_BUF));
      if (n <= 0)
        return FALSE;
      log_state.mid_line = TRUE;
      buf += n;
      len -= (gsize) n;
    }
  log_state.mid_line = FALSE;
  return TRUE;
}

static gboolean
stream_send (GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
  gboolean to_out = (level & (G_LOG_LEVEL_INFO | G_LOG_LEVEL_DEBUG)) != 0;
  int fd = to_out ? log_state.out_fd : log_state.err_fd;
  g_autofree char *text = NULL;
  g_autoptr(GString) line = g_string_new (NULL);

  if (fd < 0)
    return FALSE;
  text = g_log_writer_format_fields (level, fields, n_fields, g_log_writer_supports_color (fd));
  if (log_state.mid_line)
    g_string_append_c (line, '\n');
  g_string_append (line, text);
  g_string_append_c (line, '\n');
  if (to_out ? log_state.out_is_file : log_state.err_is_file)
    return file_write (fd, line->str, line->len);
  return stream_write (fd, line->str, line->len);
}

/* ---- the writer ---- */

static gboolean
send_record (GLogLevelFlags level, const GLogField *fields, gsize n_fields)
{
  if (log_state.mode == MA_LOG_MODE_JOURNAL)
    return journal_send (level, fields, n_fields);
  return stream_send (level, fields, n_fields);
}

/* Before the next record: one record saying how many were lost. */
static gboolean
send_dropped_notice (void)
{
  g_autofree char *message = NULL;
  g_autofree char *count = g_strdup_printf ("%" G_GUINT64_FORMAT, log_state.dropped);
  const char *why = log_state.mode == MA_LOG_MODE_JOURNAL ? "the journal was not reading"
                                                          : "the log output was not writable";
  GLogField fields[3];

  message = g_strdup_printf ("%" G_GUINT64_FORMAT " log messages dropped while %s",
                             log_state.dropped, why);
  fields[0] = (GLogField) { "MESSAGE", message, -1 };
  fields[1] = (GLogField) { "PRIORITY", "4", -1 };
  fields[2] = (GLogField) { "MA_LOG_DROPPED", count, -1 };
  return send_record (G_LOG_LEVEL_WARNING, fields, G_N_ELEMENTS (fields));
}

GLogWriterOutput
ma_log_writer (GLogLevelFlags log_level, const GLogField *fields, gsize n_fields,
               gpointer user_data)
{
  g_autoptr(GPtrArray) keep = g_ptr_array_new_with_free_func (g_free);
  g_autofree GLogField *bounded = NULL;
  gboolean fatal;

  if (fields == NULL || n_fields == 0)
    return G_LOG_WRITER_UNHANDLED;
  if (g_log_writer_default_would_drop (log_level, field_string (fields, n_fields, "GLIB_DOMAIN")))
    return G_LOG_WRITER_HANDLED;
  /* the old API (g_logv) applies the fatal masks itself; structured records rely on the writer,
   * as with GLib's default one (G_DEBUG=fatal-criticals) */
  fatal = field_string (fields, n_fields, "GLIB_OLD_LOG_API") == NULL
          && (log_level & log_state.always_fatal) != 0;

  bounded = bounded_fields (fields, n_fields, keep);
  g_mutex_lock (&log_state.lock);
  if (log_state.dropped > 0 && send_dropped_notice ())
    log_state.dropped = 0;
  if (log_state.dropped > 0 || !send_record (log_level, bounded, n_fields))
    {
      /* still not taking records: this one is lost too; no retry, no wait */
      log_state.dropped++;
      log_state.dropped_total++;
    }
  g_mutex_unlock (&log_state.lock);

  if (fatal)
    {
      if (g_test_subprocess ())
        _exit (1);
      G_BREAKPOINT ();
    }
  return G_LOG_WRITER_HANDLED;
}

/* ---- setup ---- */

static gboolean
open_journal (void)
{
  const char *path = g_getenv ("MA_JOURNAL_SOCKET");

  if (path == NULL || path[0] == '\0')
    path = MA_LOG_DEFAULT_JOURNAL_SOCKET;
  if (strlen (path) >= sizeof log_state.addr.sun_path)
    return FALSE;
  log_state.sock = socket (AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (log_state.sock < 0)
    return FALSE;
  memset (&log_state.addr, 0, sizeof log_state.addr);
  log_state.addr.sun_family = AF_UNIX;
  strcpy (log_state.addr.sun_path, path);
  log_state.addr_len
    = (socklen_t) (G_STRUCT_OFFSET (struct sockaddr_un, sun_path) + strlen (path) + 1);
  return TRUE;
}

static gboolean
fd_is_file (int fd)
{
  struct stat st;

  return fd >= 0 && fstat (fd, &st) == 0 && (S_ISREG (st.st_mode) || S_ISBLK (st.st_mode));
}

void
ma_log_configure (MaLogMode mode, int out_fd, int err_fd)
{
  g_mutex_lock (&log_state.lock);
  if (log_state.sock >= 0)
    close (log_state.sock);
  log_state.sock = -1;
  log_state.out_fd = out_fd;
  log_state.err_fd = err_fd;
  log_state.out_is_file = fd_is_file (out_fd);
  log_state.err_is_file = fd_is_file (err_fd);
  log_state.dropped = 0;
  log_state.dropped_total = 0;
  log_state.mid_line = FALSE;
  /* without a socket of our own, the fds are the fallback (still without blocking) */
  log_state.mode = mode == MA_LOG_MODE_JOURNAL && open_journal () ? MA_LOG_MODE_JOURNAL
                                                                  : MA_LOG_MODE_STREAM;
  g_mutex_unlock (&log_state.lock);
}

void
ma_log_install (void)
{
  /* the only reader of the always-fatal mask is its setter: set it back at once */
  GLogLevelFlags fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK);

  g_log_set_always_fatal (fatal);
  log_state.always_fatal = fatal & ~G_LOG_FLAG_FATAL & G_LOG_LEVEL_MASK;
  ma_log_configure (g_log_writer_is_journald (fileno (stderr)) ? MA_LOG_MODE_JOURNAL
                                                               : MA_LOG_MODE_STREAM,
                    STDOUT_FILENO, STDERR_FILENO);
  g_log_set_writer_func (ma_log_writer, NULL, NULL);
}

guint64
ma_log_dropped_pending (void)
{
  guint64 n;

  g_mutex_lock (&log_state.lock);
  n = log_state.dropped;
  g_mutex_unlock (&log_state.lock);
  return n;
}

guint64
ma_log_dropped_total (void)
{
  guint64 n;

  g_mutex_lock (&log_state.lock);
  n = log_state.dropped_total;
  g_mutex_unlock (&log_state.lock);
  return n;
}
