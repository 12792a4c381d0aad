#!/usr/bin/env bash
# Regenerates audio/earshot-sample.mp3, the bundled sample that `make run` streams:
# ten seconds of 44.1 kHz stereo, a spoken line over a soft chord, so a listener hears at once
# that audio is flowing and where the loop point is. Needs espeak-ng, sox and lame (Debian).
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
espeak-ng -s 150 -w "$tmp/voice.wav" "This is earshot. Live audio, streaming to your browser."
sox "$tmp/voice.wav" -r 44100 -c 2 "$tmp/voice-st.wav" pad 0.5 0 gain -3
sox -n -r 44100 -c 2 "$tmp/chord.wav" synth 10 sine 220 sine 277.18 sine 329.63 \
    remix 1,2 3,2 tremolo 0.5 40 fade t 0.5 10 0.5 gain -22
sox -m "$tmp/chord.wav" "$tmp/voice-st.wav" "$tmp/mix.wav" trim 0 10
lame --quiet -b 96 --resample 44.1 "$tmp/mix.wav" earshot-sample.mp3
echo "wrote audio/earshot-sample.mp3 ($(stat -c %s earshot-sample.mp3) bytes)"
