//! Tests of the partition log on a MemDisk.
