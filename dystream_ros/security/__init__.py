"""ROS 2 security (SROS2, DDS-Security) for the robot's face: a keystore made with the ``openssl`` command line,
least-privilege permissions for each process, and the check that the middleware can enforce them. No rclpy here."""
