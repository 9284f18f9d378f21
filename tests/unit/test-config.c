/* test-config.c — configuration loading, drop-in merging and typed accessors. */
#include <glib.h>
#include <glib/gstdio.h>

#include "config.h"
#include "error.h"

static void
test_dropins_override (void)
{
  g_autofree char *dir = g_dir_make_tmp ("ma-config-XXXXXX", NULL);
  g_autofree char *main_conf = g_build_filename (dir, "agent.conf", NULL);
  g_autofree char *dropdir = g_build_filename (dir, "agent.conf.d", NULL);
  g_autofree char *d1 = g_build_filename (dropdir, "10-a.conf", NULL);
  g_autofree char *d2 = g_build_filename (dropdir, "20-b.conf", NULL);
  g_autofree char *ignored = g_build_filename (dropdir, "30-c.conf.bak", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(MaConfig) config = NULL;
  g_autofree char *value = NULL;
  g_auto(GStrv) list = NULL;
  gint64 n = 0;

  g_assert_cmpint (g_mkdir (dropdir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (main_conf, "[a]\nx=main\ny=main\nn=5\n", -1, NULL));
  g_assert_true (g_file_set_contents (d2, "[a]\ny=twenty\n", -1, NULL));
  g_assert_true (g_file_set_contents (d1, "[a]\nx=ten\ny=ten\nl=p; q ;;r\n", -1, NULL));
  g_assert_true (g_file_set_contents (ignored, "[a]\nx=ignored\n", -1, NULL));

  config = ma_config_load (main_conf, &error);
  g_assert_no_error (error);
  value = ma_config_get_string (config, "a", "x", NULL);
  g_assert_cmpstr (value, ==, "ten");
  g_free (value);
  value = ma_config_get_string (config, "a", "y", NULL);
  g_assert_cmpstr (value, ==, "twenty");
  list = ma_config_get_strv (config, "a", "l");
  g_assert_cmpuint (g_strv_length (list), ==, 3);
  g_assert_cmpstr (list[1], ==, "q");
  g_assert_true (ma_config_get_int (config, "a", "n", 1, 0, 10, &n, &error));
  g_assert_cmpint (n, ==, 5);
  g_assert_cmpuint (g_strv_length ((char **) ma_config_get_sources (config)), ==, 3);

  g_unlink (ignored);
  g_unlink (d1);
  g_unlink (d2);
  g_rmdir (dropdir);
  g_unlink (main_conf);
  g_rmdir (dir);
}

static void
test_missing_explicit_file (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaConfig) config = ma_config_load ("/nonexistent/agent.conf", &error);

  g_assert_null (config);
  g_assert_nonnull (error);
  g_assert_true (strstr (error->message, "/nonexistent/agent.conf") != NULL);
}

static void
test_typed_errors (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(MaConfig) config =
    ma_config_new_from_data ("[s]\nn=12x\nbig=99\nb=maybe\nt=yes\n", &error);
  gint64 n = 0;
  gboolean b = FALSE;

  g_assert_no_error (error);
  g_assert_false (ma_config_get_int (config, "s", "n", 1, 0, 100, &n, &error));
  g_assert_error (error, MA_ERROR, MA_ERROR_INVALID_ARGUMENT);
  g_assert_true (strstr (error->message, "[s] n=12x") != NULL);
  g_clear_error (&error);
  g_assert_false (ma_config_get_int (config, "s", "big", 1, 0, 10, &n, &error));
  g_clear_error (&error);
  g_assert_false (ma_config_get_bool (config, "s", "b", FALSE, &b, &error));
  g_clear_error (&error);
  g_assert_true (ma_config_get_bool (config, "s", "t", FALSE, &b, &error));
  g_assert_true (b);
  g_assert_true (ma_config_get_int (config, "s", "absent", 7, 0, 10, &n, &error));
  g_assert_cmpint (n, ==, 7);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/config/dropins-override", test_dropins_override);
  g_test_add_func ("/config/missing-explicit-file", test_missing_explicit_file);
  g_test_add_func ("/config/typed-errors", test_typed_errors);
  return g_test_run ();
}
