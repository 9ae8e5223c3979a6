"""Bag in, outputs recorded: replay a conversation into dystream_node and record what it publishes.

`ros2 launch dystream_ros replay.launch.py bag:=conversation out:=face_run`
"""
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    replay = ExecuteProcess(cmd=['dystream', 'bag', 'replay', LaunchConfiguration('bag')], output='screen')
    return LaunchDescription([
        DeclareLaunchArgument(
            'bag', default_value=PathJoinSubstitution([FindPackageShare('dystream_ros'), 'demo_conversation']),
            description='rosbag2 (mcap or sqlite3) with self_audio and partner_audio'),
        DeclareLaunchArgument('out', default_value='dystream_replay', description='bag to record the outputs in'),
        DeclareLaunchArgument(
            'params_file', default_value=PathJoinSubstitution([FindPackageShare('dystream_ros'), 'config',
                                                               'default.yaml']),
            description='dystream_node parameters'),
        Node(package='dystream_ros', executable='dystream_node', name='dystream_node', output='screen',
             parameters=[LaunchConfiguration('params_file')]),
        ExecuteProcess(cmd=['dystream', 'bag', 'record', '--out', LaunchConfiguration('out'), '/face/motion',
                            '/head/pose', '/neck/command'], output='screen'),
        replay,
        # the conversation is over: stop everything (the recorder closes its bag on the way out)
        RegisterEventHandler(OnProcessExit(target_action=replay, on_exit=[EmitEvent(event=Shutdown())])),
    ])
