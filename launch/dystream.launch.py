"""dystream_node with a parameter file: `ros2 launch dystream_ros dystream.launch.py [params_file:=...]`.

Remap the two voices to your robot's topics with self_audio:=... and partner_audio:=...
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([FindPackageShare('dystream_ros'), 'config',
                                                               'default.yaml']),
            description='dystream_node parameters (config/default.yaml for a CPU, config/jetson.yaml for a GPU)'),
        DeclareLaunchArgument('self_audio', default_value='self_audio', description="the robot's own voice"),
        DeclareLaunchArgument('partner_audio', default_value='partner_audio', description="the partner's voice"),
        Node(
            package='dystream_ros', executable='dystream_node', name='dystream_node', output='screen',
            parameters=[LaunchConfiguration('params_file')],
            remappings=[('self_audio', LaunchConfiguration('self_audio')),
                        ('partner_audio', LaunchConfiguration('partner_audio'))]),
    ])
