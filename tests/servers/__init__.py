"""Real servers for tests, started on 127.0.0.1 only: MJPEG over HTTP, RTSP (gst-rtsp-server), a mosquitto broker and a webhook receiver."""
