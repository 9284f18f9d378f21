/* cleanup.h — g_autoptr() support for the C libraries the agent uses without GObject
 * wrappers: libudev and libmount. */
#pragma once

#include <glib.h>
#include <libmount.h>
#include <libudev.h>

typedef struct udev MaUdev;
typedef struct udev_device MaUdevDevice;
typedef struct udev_enumerate MaUdevEnumerate;
typedef struct udev_monitor MaUdevMonitor;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaUdev, udev_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaUdevDevice, udev_device_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaUdevEnumerate, udev_enumerate_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaUdevMonitor, udev_monitor_unref)

typedef struct libmnt_table MaMntTable;
typedef struct libmnt_iter MaMntIter;
typedef struct libmnt_cache MaMntCache;
typedef struct libmnt_fs MaMntFs;
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaMntTable, mnt_unref_table)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaMntIter, mnt_free_iter)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaMntCache, mnt_unref_cache)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (MaMntFs, mnt_unref_fs)
