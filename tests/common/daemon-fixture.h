/* daemon-fixture.h — starts the real migration-agent binary on a temporary UNIX socket
 * and state dir for black-box tests, and stops it; shared by every integration test. */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "client.h"

G_BEGIN_DECLS

#define MA_TEST_START_TIMEOUT_MS 20000

typedef struct
{
  char *dir;        /* temporary directory, removed at the end */
  char *socket;     /* dir/agent.sock */
  char *state_dir;  /* dir/state */
  char *config;     /* dir/agent.conf */
  char *log_path;   /* dir/agent.log: the daemon's stderr */
  GPid pid;
  gboolean running;
} MaTestDaemon;

/* ms scaled by $MA_TEST_TIMEOUT_SCALE (an integer, default 1): tests/valgrind-wrap raises
 * it for agents under memcheck. The fixture's own waits (start, stop, replies) use it. */
guint ma_test_timeout_ms (guint ms);
/* Create the directory and an empty config (config_text may add content). */
MaTestDaemon *ma_test_daemon_new (const char *config_text);
/* Start the daemon (extra_args NULL-terminated, may be NULL) and wait until it answers. */
void ma_test_daemon_start (MaTestDaemon *d, const char *const *extra_args);
/* SIGTERM and wait; returns the exit status (or -1 if killed by a signal). */
int ma_test_daemon_stop (MaTestDaemon *d);
void ma_test_daemon_kill (MaTestDaemon *d, int signo);
void ma_test_daemon_free (MaTestDaemon *d);
/* Connected and synced client. */
MaClient *ma_test_daemon_connect (MaTestDaemon *d);
/* Print the agent log to the test output (on failure). */
void ma_test_daemon_dump_log (MaTestDaemon *d);
/* Resident memory of the daemon in KiB. */
gint64 ma_test_daemon_rss_kib (MaTestDaemon *d);
/* FALSE when the daemon's RSS says nothing about its own memory: an ASan build (freed memory
 * sits in quarantine) or agents run under valgrind (tests/valgrind-wrap sets
 * MA_TEST_AGENT_UNDER_VALGRIND); leak checkers do that job there. */
gboolean ma_test_daemon_rss_meaningful (void);
/* Execute and assert success. */
JsonNode *ma_test_execute (MaClient *client, const char *command, const char *args_json);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaTestDaemon, ma_test_daemon_free)

G_END_DECLS
