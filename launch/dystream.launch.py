"""dystream_node with a parameter file: `ros2 launch dystream_ros dystream.launch.py [params_file:=...]`.

Remap the two voices to your robot's topics with self_audio:=... and partner_audio:=...; run it secure with
security:=true keystore:=DIR (enclave /dystream/face; README "Securing the robot").
"""
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
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
        DeclareLaunchArgument('security', default_value='false',
                              description='run under SROS2 (Enforce): every process with its enclave of `keystore`'),
        DeclareLaunchArgument('keystore', default_value='', description='the keystore (dystream keystore create)'),
        *(SetEnvironmentVariable(name, value, condition=IfCondition(LaunchConfiguration('security')))
          for name, value in (('ROS_SECURITY_ENABLE', 'true'), ('ROS_SECURITY_STRATEGY', 'Enforce'),
                              ('ROS_SECURITY_KEYSTORE', LaunchConfiguration('keystore')))),
        Node(
            package='dystream_ros', executable='dystream_node', name='dystream_node', output='screen',
            parameters=[LaunchConfiguration('params_file')], ros_arguments=['--enclave', '/dystream/face'],
            remappings=[('self_audio', LaunchConfiguration('self_audio')),
                        ('partner_audio', LaunchConfiguration('partner_audio'))]),
    ])
