/*
 * campeer's VP8 encoder and decoder, over libvpx.
 *
 * A thin C layer so that Rust never has to mirror libvpx's configuration struct: its layout
 * depends on the libvpx version and on the target (32-bit armv7 or 64-bit aarch64), and the
 * C compiler for each target reads it from the headers. The Rust side (src/media/vp8.rs) sees
 * only opaque handles, integers and byte pointers.
 *
 * Every function returns a vpx_codec_err_t (0 on success); campeer_vpx_error_text names it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <vpx/vp8cx.h>
#include <vpx/vp8dx.h>
#include <vpx/vpx_decoder.h>
#include <vpx/vpx_encoder.h>

struct campeer_vp8_encoder {
  vpx_codec_ctx_t codec;
  vpx_codec_enc_cfg_t config;
  vpx_image_t image;
  vpx_codec_iter_t packets;
  unsigned int width;
  unsigned int height;
};

const char *campeer_vpx_error_text(int error) {
  return vpx_codec_err_to_string((vpx_codec_err_t)error);
}

/*
 * Real-time settings for a small board: one pass, no look-ahead (every frame comes out as it
 * goes in), constant bitrate with a short buffer so that a rate change takes hold within a
 * second, error-resilient (a lost frame does not corrupt the ones that follow for longer than
 * needed), keyframes only when asked or every `keyframe_max_frames`, and the fastest speed that
 * still looks right (`cpu_used`, -16 fastest .. 16 best, negative for real-time).
 * `keyframe_max_frames` 0: keyframes only when asked for.
 */
int campeer_vp8_encoder_new(unsigned int width, unsigned int height, unsigned int fps,
                            unsigned int bitrate_kbps, unsigned int threads, int cpu_used,
                            unsigned int keyframe_max_frames,
                            struct campeer_vp8_encoder **out) {
  *out = NULL;
  struct campeer_vp8_encoder *encoder = calloc(1, sizeof *encoder);
  if (encoder == NULL) return VPX_CODEC_MEM_ERROR;
  vpx_codec_err_t error = vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &encoder->config, 0);
  if (error != VPX_CODEC_OK) {
    free(encoder);
    return error;
  }
  vpx_codec_enc_cfg_t *config = &encoder->config;
  config->g_w = width;
  config->g_h = height;
  config->g_timebase.num = 1;
  config->g_timebase.den = 90000;
  config->g_threads = threads;
  config->g_lag_in_frames = 0;
  config->g_pass = VPX_RC_ONE_PASS;
  config->g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
  config->rc_end_usage = VPX_CBR;
  config->rc_target_bitrate = bitrate_kbps;
  config->rc_min_quantizer = 2;
  config->rc_max_quantizer = 56;
  config->rc_undershoot_pct = 100;
  config->rc_overshoot_pct = 15;
  config->rc_buf_initial_sz = 500;
  config->rc_buf_optimal_sz = 600;
  config->rc_buf_sz = 1000;
  config->rc_dropframe_thresh = 0;
  config->rc_resize_allowed = 0;
  /* 0: keyframes only when asked for (campeer's keyframe policy spaces them). */
  config->kf_mode = keyframe_max_frames == 0 ? VPX_KF_DISABLED : VPX_KF_AUTO;
  config->kf_min_dist = 0;
  config->kf_max_dist = keyframe_max_frames;
  (void)fps;
  error = vpx_codec_enc_init(&encoder->codec, vpx_codec_vp8_cx(), config, 0);
  if (error != VPX_CODEC_OK) {
    free(encoder);
    return error;
  }
  vpx_codec_control(&encoder->codec, VP8E_SET_CPUUSED, cpu_used);
  vpx_codec_control(&encoder->codec, VP8E_SET_NOISE_SENSITIVITY, 0u);
  vpx_codec_control(&encoder->codec, VP8E_SET_STATIC_THRESHOLD, 1u);
  /* Keyframes at most 3x an average frame: a new viewer's keyframe does not flood its link. */
  vpx_codec_control(&encoder->codec, VP8E_SET_MAX_INTRA_BITRATE_PCT, 300u);
  /* Token partitions let libvpx's threads work on one frame together. */
  vpx_codec_control(&encoder->codec, VP8E_SET_TOKEN_PARTITIONS,
                    threads > 1 ? VP8_TWO_TOKENPARTITION : VP8_ONE_TOKENPARTITION);
  encoder->width = width;
  encoder->height = height;
  *out = encoder;
  return VPX_CODEC_OK;
}

int campeer_vp8_encoder_set_bitrate(struct campeer_vp8_encoder *encoder,
                                    unsigned int bitrate_kbps) {
  encoder->config.rc_target_bitrate = bitrate_kbps;
  return vpx_codec_enc_config_set(&encoder->codec, &encoder->config);
}

/*
 * Encodes one I420 picture of the encoder's size, read where it lies (no copy). `pts` and
 * `duration` are on a 90 kHz clock. The packets it made are then read with
 * campeer_vp8_encoder_next_packet, before the next call.
 */
int campeer_vp8_encode(struct campeer_vp8_encoder *encoder, const uint8_t *y, int y_stride,
                       const uint8_t *u, int u_stride, const uint8_t *v, int v_stride,
                       int64_t pts, unsigned long duration, int force_keyframe) {
  vpx_image_t *image = &encoder->image;
  /* The planes are given one by one, so the image is wrapped around nothing and then
   * pointed at them. */
  if (vpx_img_wrap(image, VPX_IMG_FMT_I420, encoder->width, encoder->height, 1,
                   (unsigned char *)y) == NULL) {
    return VPX_CODEC_INVALID_PARAM;
  }
  image->planes[VPX_PLANE_Y] = (unsigned char *)y;
  image->planes[VPX_PLANE_U] = (unsigned char *)u;
  image->planes[VPX_PLANE_V] = (unsigned char *)v;
  image->stride[VPX_PLANE_Y] = y_stride;
  image->stride[VPX_PLANE_U] = u_stride;
  image->stride[VPX_PLANE_V] = v_stride;
  encoder->packets = NULL;
  return vpx_codec_encode(&encoder->codec, image, pts, duration,
                          force_keyframe ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME);
}

/* The next compressed frame of the last encode: 1 with it, 0 when there is none left. */
int campeer_vp8_encoder_next_packet(struct campeer_vp8_encoder *encoder, const uint8_t **data,
                                    size_t *len, int *is_keyframe) {
  const vpx_codec_cx_pkt_t *packet;
  while ((packet = vpx_codec_get_cx_data(&encoder->codec, &encoder->packets)) != NULL) {
    if (packet->kind != VPX_CODEC_CX_FRAME_PKT) continue;
    *data = packet->data.frame.buf;
    *len = packet->data.frame.sz;
    *is_keyframe = (packet->data.frame.flags & VPX_FRAME_IS_KEY) != 0;
    return 1;
  }
  return 0;
}

void campeer_vp8_encoder_free(struct campeer_vp8_encoder *encoder) {
  if (encoder == NULL) return;
  vpx_codec_destroy(&encoder->codec);
  free(encoder);
}

struct campeer_vp8_decoder {
  vpx_codec_ctx_t codec;
  vpx_codec_iter_t pictures;
};

int campeer_vp8_decoder_new(unsigned int threads, struct campeer_vp8_decoder **out) {
  *out = NULL;
  struct campeer_vp8_decoder *decoder = calloc(1, sizeof *decoder);
  if (decoder == NULL) return VPX_CODEC_MEM_ERROR;
  vpx_codec_dec_cfg_t config;
  memset(&config, 0, sizeof config);
  config.threads = threads;
  vpx_codec_err_t error = vpx_codec_dec_init(&decoder->codec, vpx_codec_vp8_dx(), &config, 0);
  if (error != VPX_CODEC_OK) {
    free(decoder);
    return error;
  }
  *out = decoder;
  return VPX_CODEC_OK;
}

int campeer_vp8_decode(struct campeer_vp8_decoder *decoder, const uint8_t *data, size_t len) {
  decoder->pictures = NULL;
  return vpx_codec_decode(&decoder->codec, data, (unsigned int)len, NULL, 0);
}

/* The next picture of the last decode: 1 with its planes (valid until the next decode), 0 when
 * there is none. */
int campeer_vp8_decoder_next_picture(struct campeer_vp8_decoder *decoder, const uint8_t **y,
                                     const uint8_t **u, const uint8_t **v, int *y_stride,
                                     int *u_stride, int *v_stride, unsigned int *width,
                                     unsigned int *height) {
  vpx_image_t *image = vpx_codec_get_frame(&decoder->codec, &decoder->pictures);
  if (image == NULL || image->fmt != VPX_IMG_FMT_I420) return 0;
  *y = image->planes[VPX_PLANE_Y];
  *u = image->planes[VPX_PLANE_U];
  *v = image->planes[VPX_PLANE_V];
  *y_stride = image->stride[VPX_PLANE_Y];
  *u_stride = image->stride[VPX_PLANE_U];
  *v_stride = image->stride[VPX_PLANE_V];
  *width = image->d_w;
  *height = image->d_h;
  return 1;
}

void campeer_vp8_decoder_free(struct campeer_vp8_decoder *decoder) {
  if (decoder == NULL) return;
  vpx_codec_destroy(&decoder->codec);
  free(decoder);
}
