#!/bin/sh
# Regenerates media-relay/assets/testpattern.h264: the clip the relay's test-pattern source
# loops (media-relay/src/testpattern.rs embeds it with include_bytes!).
#
# What it is: 8 s of H.264 (Annex-B byte stream, RFC 6184 / ITU-T H.264 Annex B), 320x240 at
# 25 fps, constrained-baseline profile (no B-frames), an IDR every 50 frames (2 s; scenecut
# off so no extra key frames), SPS+PPS repeated before every IDR, the testsrc2 pattern (moving
# elements) with the frame number burnt in. About 200 frames, well under 300 KB.
#
# Command (run from any directory; needs ffmpeg with libx264 and libfreetype):
#   ffmpeg -y -f lavfi -i testsrc2=size=320x240:rate=25:duration=8 \
#     -vf "drawtext=fontfile=DejaVuSansMono.ttf:text='frame %{frame_num}':x=8:y=h-28:fontsize=20:fontcolor=white:box=1:boxcolor=black" \
#     -c:v libx264 -profile:v baseline -preset medium -crf 30 -pix_fmt yuv420p -g 50 -bf 0 \
#     -x264-params keyint=50:min-keyint=50:scenecut=0:repeat-headers=1 -f h264 testpattern.h264
set -eu
cd "$(dirname "$0")"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=320x240:rate=25:duration=8 \
  -vf "drawtext=fontfile=${FONT}:text='frame %{frame_num}':x=8:y=h-28:fontsize=20:fontcolor=white:box=1:boxcolor=black" \
  -c:v libx264 -profile:v baseline -preset medium -crf 30 -pix_fmt yuv420p -g 50 -bf 0 \
  -x264-params keyint=50:min-keyint=50:scenecut=0:repeat-headers=1 \
  -f h264 testpattern.h264
ls -l testpattern.h264
