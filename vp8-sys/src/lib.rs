//! campeer's thin C layer over libvpx (csrc/vp8.c), built for the target by build.rs, and
//! its declarations; campeer's `media::vp8` is the safe interface. A crate of its own so that
//! campeer's coverage-instrumented fuzz build instruments campeer alone: a build script in
//! campeer itself would be instrumented too, and would not link.

use std::ffi::{c_char, c_int, c_uint, c_ulong};

/// An encoder made by `campeer_vp8_encoder_new`, freed by `campeer_vp8_encoder_free`.
#[repr(C)]
pub struct RawEncoder {
    _private: [u8; 0],
}

/// A decoder made by `campeer_vp8_decoder_new`, freed by `campeer_vp8_decoder_free`.
#[repr(C)]
pub struct RawDecoder {
    _private: [u8; 0],
}

unsafe extern "C" {
    pub fn campeer_vpx_error_text(error: c_int) -> *const c_char;
    pub fn campeer_vp8_encoder_new(
        width: c_uint,
        height: c_uint,
        fps: c_uint,
        bitrate_kbps: c_uint,
        threads: c_uint,
        cpu_used: c_int,
        keyframe_max_frames: c_uint,
        out: *mut *mut RawEncoder,
    ) -> c_int;
    pub fn campeer_vp8_encoder_set_bitrate(encoder: *mut RawEncoder, bitrate_kbps: c_uint)
    -> c_int;
    pub fn campeer_vp8_encode(
        encoder: *mut RawEncoder,
        y: *const u8,
        y_stride: c_int,
        u: *const u8,
        u_stride: c_int,
        v: *const u8,
        v_stride: c_int,
        pts: i64,
        duration: c_ulong,
        force_keyframe: c_int,
    ) -> c_int;
    pub fn campeer_vp8_encoder_next_packet(
        encoder: *mut RawEncoder,
        data: *mut *const u8,
        len: *mut usize,
        is_keyframe: *mut c_int,
    ) -> c_int;
    pub fn campeer_vp8_encoder_free(encoder: *mut RawEncoder);
    pub fn campeer_vp8_decoder_new(threads: c_uint, out: *mut *mut RawDecoder) -> c_int;
    pub fn campeer_vp8_decode(decoder: *mut RawDecoder, data: *const u8, len: usize) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub fn campeer_vp8_decoder_next_picture(
        decoder: *mut RawDecoder,
        y: *mut *const u8,
        u: *mut *const u8,
        v: *mut *const u8,
        y_stride: *mut c_int,
        u_stride: *mut c_int,
        v_stride: *mut c_int,
        width: *mut c_uint,
        height: *mut c_uint,
    ) -> c_int;
    pub fn campeer_vp8_decoder_free(decoder: *mut RawDecoder);
}
