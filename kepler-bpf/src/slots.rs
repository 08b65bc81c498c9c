//! The `acct` array of the BPF program (one slot per process), mapped into this process's
//! memory: a read of every process is a walk over memory, with no system call (issue 5).
//!
//! The program writes the slots while we read them, so every access goes through atomics
//! (plain loads and stores on x86-64 and arm64). A slot is published by its `tgid`, written
//! last by the program: a `tgid` of 0 is a free slot (or one being filled), and is skipped.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::raw::{ProcRecord, FLAGS_OFFSET, PROC_ACCT_SIZE, TGID_OFFSET};

const WORDS: usize = PROC_ACCT_SIZE / 8;

/// The mapping of the `acct` array.
pub(crate) struct SlotTable {
    base: NonNull<u8>,
    len: usize,
    slots: u32,
}

// SAFETY: the mapping is plain shared memory accessed only through atomics; it is unmapped
// once, on drop.
unsafe impl Send for SlotTable {}

impl SlotTable {
    /// Maps the array behind `fd` (a `BPF_F_MMAPABLE` array of `slots` slots).
    pub(crate) fn map(fd: BorrowedFd<'_>, slots: u32) -> std::io::Result<SlotTable> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let len = (slots as usize * PROC_ACCT_SIZE).div_ceil(page) * page;
        // SAFETY: a fresh shared mapping of the map's value area; the kernel checks the
        // length against the array's size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<u8>()).ok_or_else(std::io::Error::last_os_error)?;
        Ok(SlotTable { base, len, slots })
    }

    fn word(&self, slot: u32, offset: usize) -> Option<&AtomicU64> {
        if slot >= self.slots || !offset.is_multiple_of(8) || offset >= PROC_ACCT_SIZE {
            return None;
        }
        let at = slot as usize * PROC_ACCT_SIZE + offset;
        // SAFETY: in bounds (checked above), 8-aligned (page-aligned base, 64-byte slots,
        // 8-aligned offset), and the memory lives as long as `self`.
        Some(unsafe { AtomicU64::from_ptr(self.base.as_ptr().add(at).cast::<u64>()) })
    }

    fn half(&self, slot: u32, offset: usize) -> Option<&AtomicU32> {
        if slot >= self.slots || !offset.is_multiple_of(4) || offset >= PROC_ACCT_SIZE {
            return None;
        }
        let at = slot as usize * PROC_ACCT_SIZE + offset;
        // SAFETY: as in `word`, 4-aligned.
        Some(unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(at).cast::<u32>()) })
    }

    /// The record in `slot`, or `None` when it is free.
    fn load(&self, slot: u32) -> Option<ProcRecord> {
        // The owner first: the program writes it last, after the rest of a new slot.
        if self.half(slot, TGID_OFFSET)?.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut bytes = [0u8; PROC_ACCT_SIZE];
        for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(
                &self
                    .word(slot, i * 8)?
                    .load(Ordering::Relaxed)
                    .to_ne_bytes(),
            );
        }
        ProcRecord::decode(slot, &bytes)
    }

    /// The on-CPU time word of `slot` (the first of `struct proc_acct`).
    pub(crate) fn on_cpu_ns(&self, slot: u32) -> Option<u64> {
        Some(self.word(slot, 0)?.load(Ordering::Relaxed))
    }

    /// Every taken slot, in slot order, into `out`.
    pub(crate) fn read(&self, out: &mut Vec<ProcRecord>) {
        out.clear();
        out.extend((0..self.slots).filter_map(|s| self.load(s)));
    }

    /// Writes `r` into `slot` (tests and benchmarks), owner last.
    pub(crate) fn write(&self, slot: u32, r: &ProcRecord) {
        let bytes = r.encode_value();
        for (i, chunk) in bytes.chunks_exact(8).enumerate().take(WORDS - 1) {
            if let (Some(w), Ok(v)) = (self.word(slot, i * 8), chunk.try_into()) {
                w.store(u64::from_ne_bytes(v), Ordering::Relaxed);
            }
        }
        if let Some(ppid) = self.half(slot, TGID_OFFSET + 4) {
            ppid.store(r.ppid, Ordering::Relaxed);
        }
        if let Some(owner) = self.half(slot, TGID_OFFSET) {
            owner.store(r.tgid, Ordering::Release);
        }
    }

    /// Frees `slot`: owner 0 first, then the rest cleared. Only called once its process is
    /// gone and reported: the program then writes to it only from a per-CPU cache way that
    /// still names that process, and only while the owner matches, which clearing ends (an
    /// add racing the clear lands in a free slot, zeroed again when the slot is taken).
    pub(crate) fn clear(&self, slot: u32) {
        if let Some(owner) = self.half(slot, TGID_OFFSET) {
            owner.store(0, Ordering::Release);
        }
        for i in 0..WORDS - 1 {
            if let Some(w) = self.word(slot, i * 8) {
                w.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Sets `flags` in the slot's flags, atomically with the program's own updates.
    pub(crate) fn or_flags(&self, slot: u32, flags: u32) {
        if let Some(f) = self.half(slot, FLAGS_OFFSET) {
            f.fetch_or(flags, Ordering::Relaxed);
        }
    }
}

impl Drop for SlotTable {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once; no reference into it outlives
        // `self` (every accessor borrows `self`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
