#!/usr/bin/env python3
"""A power-cut simulator: a passthrough FUSE file system that remembers what is durable.

    powercut_fs.py BACKING MOUNTPOINT STATE

Every operation is passed through to BACKING at once, so the process above sees a normal file system. Alongside,
the durable state is kept the way a disk keeps it (the model of the ALICE and CrashMonkey studies and of LazyFS):

- a file's data (write, truncate) is durable once the file is fsynced or fdatasynced; until then it is pending;
- a name (create, mkdir, unlink, rmdir, rename) is durable once its directory is fsynced; a new file's name is
  not made durable by fsyncing the file;
- a rename is atomic: after a cut the entry shows the old inode or the new one, never neither.

The test writes one command on stdin:

    cut all            power is cut and every pending operation is lost
    cut subset SEED    power is cut and a seeded random subset of the pending operations reached the disk, in any
                       order: each 4 KiB piece of each pending write, each truncate and each name operation is kept
                       or dropped independently (later operations of a file may survive where earlier ones did not)

From then on every operation fails with EIO; the durable state is written to STATE (a new directory, the next
power-on's BACKING), the file system is unmounted and a JSON line of counts is printed. "ready" is printed once
the mount serves.

Reads of the live files are served from BACKING through the kernel's page cache: the server reads its segments
through read-only shared mmaps, which need it (direct_io would refuse shared mmaps unless the file system asks for
FUSE_DIRECT_IO_ALLOW_MMAP, which Debian 12's libfuse 3.14 cannot). Writes are write-through (no writeback cache):
every write() reaches this process before it returns. The server writes with pwrite and never through a mapping
(Storage's AppendableSegment, AtomicFile), so no dirty mapped page of a killed process can reach the disk after
the cut; a file system under a writer that did use writable mmaps would have to count msync as its fsync.
"""

import errno
import json
import os
import random
import shutil
import stat as stat_module
import sys

import pyfuse3
import trio

PAGE = 4096


class PowerCutFs(pyfuse3.Operations):
    enable_writeback_cache = False

    def __init__(self, backing):
        super().__init__()
        self.backing = backing
        self.shadow = None  # directory of durable contents of files changed this power-on, set by main
        self.cut = False
        self.next_inode = pyfuse3.ROOT_INODE + 1
        self.path_of = {pyfuse3.ROOT_INODE: backing}
        self.inode_of = {backing: pyfuse3.ROOT_INODE}
        self.lookups = {}
        self.fd_inode = {}
        # Durable state of what changed this power-on; everything else is durable as it is in BACKING.
        self.durable_data = set()  # inodes whose durable content is shadow/<inode>
        self.durable_names = {}  # directory inode -> {name: inode}
        self.pending_data = {}  # inode -> [("write", offset, bytes) | ("truncate", size)]
        self.pending_names = {}  # directory inode -> [("link", name, inode) | ("unlink", name) | ("rename", old, new, inode)]
        self.directories = {pyfuse3.ROOT_INODE}
        self.counts = {"writes": 0, "fsyncs": 0, "fsyncdirs": 0, "name_ops": 0}

    # --- inodes and paths -------------------------------------------------------------------------------------

    def _inode(self, path):
        inode = self.inode_of.get(path)
        if inode is None:
            inode = self.next_inode
            self.next_inode += 1
            self.inode_of[path] = inode
            self.path_of[inode] = path
            if os.path.isdir(path):
                self.directories.add(inode)
        return inode

    def _path(self, inode):
        try:
            return self.path_of[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT)

    def _child(self, parent, name):
        return os.path.join(self._path(parent), os.fsdecode(name))

    def _forget_path(self, path):
        inode = self.inode_of.pop(path, None)
        if inode is not None and self.path_of.get(inode) == path:
            del self.path_of[inode]

    def _move_paths(self, old, new):
        moved = {p: i for p, i in self.inode_of.items() if p == old or p.startswith(old + os.sep)}
        for p in moved:
            del self.inode_of[p]
        for p, i in moved.items():
            q = new + p[len(old):]
            self.inode_of[q] = i
            self.path_of[i] = q

    def _attr(self, path, inode):
        try:
            st = os.lstat(path)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        attr = pyfuse3.EntryAttributes()
        for name in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size", "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(attr, name, getattr(st, name))
        attr.st_ino = inode
        attr.st_blksize = 512
        attr.st_blocks = st.st_blocks
        attr.generation = 0
        attr.entry_timeout = 1
        attr.attr_timeout = 1
        return attr

    def _live(self):
        if self.cut:
            raise pyfuse3.FUSEError(errno.EIO)

    # --- the durable model ----------------------------------------------------------------------------------

    def _keep_durable_content(self, inode):
        """Before the first change of a file this power-on, its durable content is what BACKING holds now."""
        if inode in self.durable_data or inode in self.directories:
            return
        path = self.path_of.get(inode)
        target = os.path.join(self.shadow, str(inode))
        if path is not None and os.path.exists(path):
            shutil.copyfile(path, target)
        else:
            open(target, "wb").close()
        self.durable_data.add(inode)

    def _keep_durable_names(self, directory):
        """Before the first name change in a directory this power-on, its durable entries are those it has now."""
        if directory in self.durable_names:
            return
        path = self._path(directory)
        self.durable_names[directory] = {name: self._inode(os.path.join(path, name)) for name in os.listdir(path)}

    def _keep_before_unlink(self, inode):
        """A name about to go may still be durable: keep what its inode durably holds."""
        if inode in self.directories:
            self._keep_durable_names(inode)
            for child in list(self.durable_names[inode].values()):
                self._keep_before_unlink(child)
        else:
            self._keep_durable_content(inode)

    def _pend_data(self, inode, op):
        self._keep_durable_content(inode)
        self.pending_data.setdefault(inode, []).append(op)

    def _pend_name(self, directory, op):
        self._keep_durable_names(directory)
        self.pending_names.setdefault(directory, []).append(op)
        self.counts["name_ops"] += 1

    def _apply_data(self, inode, ops):
        with open(os.path.join(self.shadow, str(inode)), "r+b") as f:
            for op in ops:
                if op[0] == "write":
                    f.seek(op[1])
                    f.write(op[2])
                else:
                    f.truncate(op[1])

    @staticmethod
    def _apply_names(entries, ops):
        for op in ops:
            if op[0] == "link":
                entries[op[1]] = op[2]
            elif op[0] == "unlink":
                entries.pop(op[1], None)
            else:
                _, old, new, inode = op
                if entries.get(old) == inode:
                    del entries[old]
                entries[new] = inode

    def _sync_data(self, inode):
        ops = self.pending_data.pop(inode, [])
        if ops:
            self._apply_data(inode, ops)

    def power_cut(self, state, seed):
        """Writes the durable state to STATE: nothing pending (seed None) or a random subset of it."""
        self.cut = True
        chooser = random.Random(seed) if seed is not None else None
        lost = kept = 0
        for inode, ops in self.pending_data.items():
            survivors = []
            for op in ops:
                pieces = [op] if op[0] == "truncate" else [
                    ("write", op[1] + start, op[2][start:start + PAGE - (op[1] + start) % PAGE])
                    for start in self._page_starts(op[1], len(op[2]))]
                for piece in pieces:
                    if chooser is not None and chooser.random() < 0.5:
                        survivors.append(piece)
                        kept += 1
                    else:
                        lost += 1
            self._apply_data(inode, survivors)
        for directory, ops in self.pending_names.items():
            survivors = [op for op in ops if chooser is not None and chooser.random() < 0.5]
            kept += len(survivors)
            lost += len(ops) - len(survivors)
            self._apply_names(self.durable_names[directory], survivors)
        os.makedirs(state)
        files = self._write_tree(pyfuse3.ROOT_INODE, state, set())
        return {"pieces_lost": lost, "pieces_kept": kept, "files": files, **self.counts}

    @staticmethod
    def _page_starts(offset, length):
        starts, start = [], 0
        while start < length:
            starts.append(start)
            start += PAGE - (offset + start) % PAGE
        return starts

    def _write_tree(self, directory, target, seen):
        if directory in self.durable_names:
            entries = self.durable_names[directory]
        else:
            path = self._path(directory)
            entries = {name: self._inode(os.path.join(path, name)) for name in os.listdir(path)}
        files = 0
        for name, inode in entries.items():
            destination = os.path.join(target, name)
            if inode in self.directories:
                os.mkdir(destination)
                files += self._write_tree(inode, destination, seen)
            elif inode in seen:
                raise RuntimeError(f"inode {inode} has two durable names; hard links are not simulated")
            else:
                seen.add(inode)
                source = os.path.join(self.shadow, str(inode)) if inode in self.durable_data else self._path(inode)
                shutil.copyfile(source, destination)
                files += 1
        return files

    # --- pyfuse3 operations ---------------------------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx=None):
        path = self._child(parent_inode, name)
        if not os.path.lexists(path):
            raise pyfuse3.FUSEError(errno.ENOENT)
        inode = self._inode(path)
        self.lookups[inode] = self.lookups.get(inode, 0) + 1
        return self._attr(path, inode)

    async def forget(self, inode_list):
        pass  # inodes keep their numbers for the whole power-on, so that durable state never mixes two files

    async def getattr(self, inode, ctx=None):
        return self._attr(self._path(inode), inode)

    async def setattr(self, inode, attr, fields, fh, ctx):
        self._live()
        path = self._path(inode)
        try:
            if fields.update_size:
                self._pend_data(inode, ("truncate", attr.st_size))
                if fh is not None:
                    os.ftruncate(fh, attr.st_size)
                else:
                    os.truncate(path, attr.st_size)
            if fields.update_mode:
                os.chmod(path, stat_module.S_IMODE(attr.st_mode))
            if fields.update_atime or fields.update_mtime:
                st = os.lstat(path)
                os.utime(path, ns=(attr.st_atime_ns if fields.update_atime else st.st_atime_ns,
                                   attr.st_mtime_ns if fields.update_mtime else st.st_mtime_ns))
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        return self._attr(path, inode)

    async def opendir(self, inode, ctx):
        self._path(inode)
        return inode

    async def readdir(self, inode, start_id, token):
        path = self._path(inode)
        names = sorted(os.listdir(path))
        for index, name in enumerate(names[start_id:], start_id):
            child = os.path.join(path, name)
            attr = self._attr(child, self._inode(child))
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attr, index + 1):
                break
            self.lookups[attr.st_ino] = self.lookups.get(attr.st_ino, 0) + 1

    async def releasedir(self, fh):
        pass

    async def fsyncdir(self, fh, datasync):
        self._live()
        self.counts["fsyncdirs"] += 1
        ops = self.pending_names.pop(fh, [])
        if ops:
            self._apply_names(self.durable_names[fh], ops)

    async def mkdir(self, parent_inode, name, mode, ctx):
        self._live()
        path = self._child(parent_inode, name)
        try:
            os.mkdir(path, mode)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        inode = self._inode(path)
        self.directories.add(inode)
        self.durable_names[inode] = {}
        self._pend_name(parent_inode, ("link", os.fsdecode(name), inode))
        self.lookups[inode] = self.lookups.get(inode, 0) + 1
        return self._attr(path, inode)

    async def _remove(self, parent_inode, name, remove):
        self._live()
        path = self._child(parent_inode, name)
        inode = self.inode_of.get(path) or self._inode(path)
        self._keep_durable_names(parent_inode)
        self._keep_before_unlink(inode)
        try:
            remove(path)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        self._pend_name(parent_inode, ("unlink", os.fsdecode(name)))
        self._forget_path(path)

    async def unlink(self, parent_inode, name, ctx):
        await self._remove(parent_inode, name, os.unlink)

    async def rmdir(self, parent_inode, name, ctx):
        await self._remove(parent_inode, name, os.rmdir)

    async def rename(self, parent_old, name_old, parent_new, name_new, flags, ctx):
        self._live()
        if flags != 0:
            raise pyfuse3.FUSEError(errno.EINVAL)
        old = self._child(parent_old, name_old)
        new = self._child(parent_new, name_new)
        inode = self._inode(old)
        self._keep_durable_names(parent_old)
        self._keep_durable_names(parent_new)
        replaced = self.inode_of.get(new) if os.path.lexists(new) else None
        if os.path.lexists(new) and replaced is None:
            replaced = self._inode(new)
        if replaced is not None:
            self._keep_before_unlink(replaced)
        try:
            os.rename(old, new)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        if replaced is not None:
            self._forget_path(new)
        self._move_paths(old, new)
        old_name, new_name = os.fsdecode(name_old), os.fsdecode(name_new)
        if parent_old == parent_new:
            self._pend_name(parent_old, ("rename", old_name, new_name, inode))
        else:
            self._pend_name(parent_new, ("link", new_name, inode))
            self._pend_name(parent_old, ("unlink", old_name))

    async def link(self, inode, new_parent_inode, new_name, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def symlink(self, parent_inode, name, target, ctx):
        raise pyfuse3.FUSEError(errno.EPERM)

    async def open(self, inode, flags, ctx):
        self._live()
        path = self._path(inode)
        if flags & os.O_TRUNC:
            self._pend_data(inode, ("truncate", 0))
        try:
            fd = os.open(path, flags & ~os.O_APPEND)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        self.fd_inode[fd] = inode
        return pyfuse3.FileInfo(fh=fd)

    async def create(self, parent_inode, name, mode, flags, ctx):
        self._live()
        path = self._child(parent_inode, name)
        existed = os.path.lexists(path)
        try:
            fd = os.open(path, flags | os.O_CREAT, mode)
        except OSError as e:
            raise pyfuse3.FUSEError(e.errno)
        inode = self._inode(path)
        if not existed:
            open(os.path.join(self.shadow, str(inode)), "wb").close()  # a new file is durably empty until fsynced
            self.durable_data.add(inode)
            self._pend_name(parent_inode, ("link", os.fsdecode(name), inode))
        elif flags & os.O_TRUNC:
            self._pend_data(inode, ("truncate", 0))
        self.fd_inode[fd] = inode
        self.lookups[inode] = self.lookups.get(inode, 0) + 1
        return pyfuse3.FileInfo(fh=fd), self._attr(path, inode)

    async def read(self, fh, offset, length):
        return os.pread(fh, length, offset)

    async def write(self, fh, offset, buf):
        self._live()
        self.counts["writes"] += 1
        self._pend_data(self.fd_inode[fh], ("write", offset, bytes(buf)))
        return os.pwrite(fh, buf, offset)

    async def fsync(self, fh, datasync):
        self._live()
        self.counts["fsyncs"] += 1
        self._sync_data(self.fd_inode[fh])

    async def flush(self, fh):
        pass

    async def release(self, fh):
        self.fd_inode.pop(fh, None)
        os.close(fh)

    async def statfs(self, ctx):
        st = os.statvfs(self.backing)
        attr = pyfuse3.StatvfsData()
        for name in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail", "f_namemax"):
            setattr(attr, name, getattr(st, name))
        return attr


async def serve(fs, state):
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pyfuse3.main)
        print("ready", flush=True)
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        words = line.split()
        if words[:2] == ["cut", "all"]:
            seed = None
        elif words[:2] == ["cut", "subset"] and len(words) == 3:
            seed = int(words[2])
        else:
            raise SystemExit(f"powercut_fs: unknown command {line!r}")
        print(json.dumps(fs.power_cut(state, seed)), flush=True)
        pyfuse3.terminate()


def main():
    backing, mountpoint, state = (os.path.abspath(a) for a in sys.argv[1:4])
    fs = PowerCutFs(backing)
    fs.shadow = state + ".shadow"
    os.makedirs(fs.shadow)
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")
    options |= {"fsname=powercut", "noatime"}
    pyfuse3.init(fs, mountpoint, options)
    try:
        trio.run(serve, fs, state)
    finally:
        pyfuse3.close(unmount=True)
        shutil.rmtree(fs.shadow, ignore_errors=True)


if __name__ == "__main__":
    main()
