/* image_rootfs.h - a task's root filesystem from an image's unpacked layers.
 *
 * The layers stay read-only and shared in the image cache; each task gets
 * its own writable view:
 *  - overlay: lowerdir = the layers (top first), upperdir and workdir in
 *    the task's sandbox. Nothing is copied, so a task starts in the same
 *    time whatever the image's size. The lower dirs are passed relative to
 *    the cache's layers directory (the mount is made from there), so the
 *    one-page limit of mount options holds ~50 layers, not ~30.
 *  - copy: where overlay is not possible (no overlay in the kernel, an
 *    upper dir on a filesystem overlay refuses, layers unpacked without
 *    root), the layers are copied into the target one after another,
 *    whiteouts applied (in both formats image_tar writes).
 */
#ifndef BERTH_IMAGE_ROOTFS_H
#define BERTH_IMAGE_ROOTFS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/util.h"

/* Mount an overlay on `target`: lower dirs are `base`/lower[i] (lower[0]
 * is the bottom layer), upper and work are absolute and must exist, empty,
 * on one filesystem. */
int image_rootfs_mount_overlay(const char *base, char *const *lower, size_t n, const char *upper,
			       const char *work, const char *target, struct berr *err);

/* Copy the layer directories (bottom first) into the existing directory
 * `target`, applying whiteouts and opaque directories. `root`: set owners
 * and create device nodes. Never follows a symlink in target. */
int image_rootfs_copy_layers(char *const *layers, size_t n, const char *target, bool root,
			     struct berr *err);

#endif
