//! Recording from the one encode: fragmented MP4 files of the H.264 stream (and the Opus
//! sound) on disk, continuous or around motion, rotated to keep the disk from filling.
//!
//! `mp4` writes the boxes; `recorder` decides what goes in which file (pure, in the stream's
//! time); `disk` writes files, names them and rotates them (on a thread of its own: an SD card
//! may stall); `task` feeds the recorder from the hubs and the motion detector; `library`
//! lists what is on disk for the recordings API.

pub mod disk;
pub mod library;
pub mod mp4;
pub mod recorder;
pub mod task;
