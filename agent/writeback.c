/* writeback.c — how much a freeze will have to flush: dirty and writeback bytes (system-wide
 * from meminfo, per device from the bdi stats when debugfs has them), recent write throughput. */
#include "writeback.h"

#include <gio/gio.h>
#include <string.h>

#include "json.h"
#include "paths.h"

#define MA_WRITEBACK_SECTOR_BYTES 512

typedef struct
{
  char *name;
  char *dev;                /* "M:m" */
  guint64 sectors_written;
  gint64 dirty_bytes;       /* -1 when the kernel does not say (no debugfs) */
  gint64 writeback_bytes;
} DeviceSample;

struct _MaWritebackSample
{
  gint64 time_us;
  gint64 dirty_bytes;
  gint64 writeback_bytes;
  GPtrArray *devices; /* DeviceSample* */
};

G_LOCK_DEFINE_STATIC (remembered);
static MaWritebackSample *remembered_sample;

static void
device_sample_free (DeviceSample *d)
{
  g_free (d->name);
  g_free (d->dev);
  g_free (d);
}

void
ma_writeback_sample_free (MaWritebackSample *self)
{
  if (self == NULL)
    return;
  g_ptr_array_unref (self->devices);
  g_free (self);
}

/* "Name:   1234 kB" → bytes, or -1. */
static gint64
kb_field (const char *text, const char *name)
{
  const char *p = text;
  gsize n = strlen (name);

  while (p != NULL && *p != '\0')
    {
      if (strncmp (p, name, n) == 0 && p[n] == ':')
        return (gint64) g_ascii_strtoull (p + n + 1, NULL, 10) * 1024;
      p = strchr (p, '\n');
      if (p != NULL)
        p++;
    }
  return -1;
}

MaWritebackSample *
ma_writeback_sample_new (void)
{
  MaWritebackSample *self = g_new0 (MaWritebackSample, 1);
  g_autofree char *meminfo_path = ma_path_build (ma_path_procfs (), "meminfo", NULL);
  g_autofree char *block_path = ma_path_build (ma_path_sysfs (), "block", NULL);
  g_autofree char *meminfo = NULL;
  g_autoptr(GDir) dir = NULL;
  const char *name;

  self->time_us = g_get_monotonic_time ();
  self->devices = g_ptr_array_new_with_free_func ((GDestroyNotify) device_sample_free);
  self->dirty_bytes = -1;
  self->writeback_bytes = -1;
  if (g_file_get_contents (meminfo_path, &meminfo, NULL, NULL))
    {
      self->dirty_bytes = kb_field (meminfo, "Dirty");
      self->writeback_bytes = kb_field (meminfo, "Writeback");
    }
  dir = g_dir_open (block_path, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *stat_path = g_build_filename (block_path, name, "stat", NULL);
      g_autofree char *dev_path = g_build_filename (block_path, name, "dev", NULL);
      g_autofree char *stat = NULL;
      g_autofree char *dev = NULL;
      g_autofree char *bdi_path = NULL;
      g_autofree char *bdi = NULL;
      g_auto(GStrv) fields = NULL;
      DeviceSample *d;

      if (!g_file_get_contents (stat_path, &stat, NULL, NULL)
          || !g_file_get_contents (dev_path, &dev, NULL, NULL))
        continue;
      fields = g_strsplit_set (g_strstrip (stat), " \t", -1);
      /* drop empty fields from repeated spaces */
      {
        guint w = 0;
        for (guint r = 0; fields[r] != NULL; r++)
          if (fields[r][0] != '\0')
            fields[w++] = fields[r];
          else
            g_free (fields[r]);
        fields[w] = NULL;
      }
      if (g_strv_length (fields) < 7)
        continue;
      d = g_new0 (DeviceSample, 1);
      d->name = g_strdup (name);
      d->dev = g_strdup (g_strstrip (dev));
      d->sectors_written = g_ascii_strtoull (fields[6], NULL, 10);
      d->dirty_bytes = -1;
      d->writeback_bytes = -1;
      bdi_path = ma_path_build (ma_path_sysfs (), "kernel", "debug", "bdi", d->dev, "stats", NULL);
      if (g_file_get_contents (bdi_path, &bdi, NULL, NULL))
        {
          d->dirty_bytes = kb_field (bdi, "BdiReclaimable");
          d->writeback_bytes = kb_field (bdi, "BdiWriteback");
        }
      g_ptr_array_add (self->devices, d);
    }
  return self;
}

static DeviceSample *
find_device (MaWritebackSample *sample, const char *name)
{
  for (guint i = 0; i < sample->devices->len; i++)
    {
      DeviceSample *d = sample->devices->pdata[i];
      if (g_strcmp0 (d->name, name) == 0)
        return d;
    }
  return NULL;
}

static double
sync_seconds (gint64 bytes, double rate)
{
  if (bytes <= 0)
    return 0;
  return (double) bytes / MAX (rate, MA_WRITEBACK_ASSUMED_BYTES_PER_SECOND);
}

JsonNode *
ma_writeback_report (MaWritebackSample *start, GCancellable *cancellable)
{
  g_autoptr(MaWritebackSample) now = NULL;
  MaWritebackSample *before = start;
  g_autoptr(MaWritebackSample) previous = NULL;
  JsonObject *obj = json_object_new ();
  JsonArray *devices = json_array_new ();
  double interval, total_rate = 0;

  G_LOCK (remembered);
  previous = g_steal_pointer (&remembered_sample);
  G_UNLOCK (remembered);
  if (previous != NULL)
    {
      gint64 age = g_get_monotonic_time () - previous->time_us;
      if (age >= MA_WRITEBACK_MIN_INTERVAL_US && age <= MA_WRITEBACK_MAX_INTERVAL_US)
        before = previous;
    }
  if (before == start)
    {
      gint64 wait = before->time_us + MA_WRITEBACK_MIN_INTERVAL_US - g_get_monotonic_time ();
      if (wait > 0 && !g_cancellable_is_cancelled (cancellable))
        g_usleep ((gulong) wait);
    }
  now = ma_writeback_sample_new ();
  interval = (double) (now->time_us - before->time_us) / G_USEC_PER_SEC;

  for (guint i = 0; i < now->devices->len; i++)
    {
      DeviceSample *d = now->devices->pdata[i];
      DeviceSample *b = find_device (before, d->name);
      JsonObject *dev = json_object_new ();
      double rate = 0;
      gint64 pending;

      if (b != NULL && d->sectors_written >= b->sectors_written && interval > 0)
        rate = (double) (d->sectors_written - b->sectors_written) * MA_WRITEBACK_SECTOR_BYTES
               / interval;
      total_rate += rate;
      json_object_set_string_member (dev, "name", d->name);
      json_object_set_string_member (dev, "device", d->dev);
      json_object_set_double_member (dev, "write_bytes_per_second", rate);
      if (d->dirty_bytes >= 0)
        json_object_set_int_member (dev, "dirty_bytes", d->dirty_bytes);
      if (d->writeback_bytes >= 0)
        json_object_set_int_member (dev, "writeback_bytes", d->writeback_bytes);
      pending = MAX (d->dirty_bytes, 0) + MAX (d->writeback_bytes, 0);
      if (d->dirty_bytes >= 0)
        json_object_set_double_member (dev, "estimated_sync_seconds", sync_seconds (pending, rate));
      json_array_add_element (devices, ma_json_new_object_node (dev));
    }

  if (now->dirty_bytes >= 0)
    json_object_set_int_member (obj, "dirty_bytes", now->dirty_bytes);
  if (now->writeback_bytes >= 0)
    json_object_set_int_member (obj, "writeback_bytes", now->writeback_bytes);
  json_object_set_double_member (obj, "write_bytes_per_second", total_rate);
  json_object_set_double_member (obj, "sample_seconds", interval);
  json_object_set_string_member (obj, "rate_source",
                                 total_rate >= MA_WRITEBACK_ASSUMED_BYTES_PER_SECOND ? "measured"
                                                                                    : "assumed");
  json_object_set_double_member (
    obj, "estimated_sync_seconds",
    sync_seconds (MAX (now->dirty_bytes, 0) + MAX (now->writeback_bytes, 0), total_rate));
  json_object_set_array_member (obj, "devices", devices);

  G_LOCK (remembered);
  ma_writeback_sample_free (remembered_sample);
  remembered_sample = g_steal_pointer (&now);
  G_UNLOCK (remembered);
  return ma_json_new_object_node (obj);
}

double
ma_writeback_report_get_sync_seconds (JsonNode *report)
{
  double seconds = 0;

  if (report != NULL && JSON_NODE_HOLDS_OBJECT (report))
    ma_json_get_double (json_node_get_object (report), "estimated_sync_seconds", &seconds, NULL);
  return seconds;
}
