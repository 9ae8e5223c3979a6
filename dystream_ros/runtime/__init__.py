"""The streaming runtime below the nodes: audio in, face frames out, with latency accounting (no rclpy here)."""
