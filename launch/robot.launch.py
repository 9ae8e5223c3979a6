"""A robot with a microphone, a speaker and a TTS topic: the microphone is the partner's voice, the TTS the robot's
own, played on the speaker by audio_player_node at the times the face shows it.

`ros2 launch dystream_ros robot.launch.py tts_audio:=/tts/audio microphone:=ReSpeaker speaker:=USB`

Secure: security:=true keystore:=DIR, with the enclaves /dystream/face, /dystream/capture and /dystream/player made
for these node names and topics (README "Securing the robot").
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
            description='dystream_node parameters'),
        DeclareLaunchArgument('tts_audio', default_value='/tts/audio',
                              description="topic of the robot's TTS output (AudioDataStamped)"),
        DeclareLaunchArgument('microphone', default_value='',
                              description='input device index or part of its name; empty for the default'),
        DeclareLaunchArgument('play_tts', default_value='true',
                              description='play the TTS on the speaker (audio_player_node); false when the TTS '
                                          'plays it itself'),
        DeclareLaunchArgument('speaker', default_value='',
                              description='output device index or part of its name; empty for the default'),
        DeclareLaunchArgument('speaker_latency_ms', default_value='-1',
                              description='latency of the speaker in ms, measured with a loopback, for a device '
                                          'that does not know all of it (Bluetooth, an amplifier); negative: as '
                                          'PortAudio reports it'),
        DeclareLaunchArgument('security', default_value='false',
                              description='run under SROS2 (Enforce): every process with its enclave of `keystore`'),
        DeclareLaunchArgument('keystore', default_value='', description='the keystore (dystream keystore create)'),
        *(SetEnvironmentVariable(name, value, condition=IfCondition(LaunchConfiguration('security')))
          for name, value in (('ROS_SECURITY_ENABLE', 'true'), ('ROS_SECURITY_STRATEGY', 'Enforce'),
                              ('ROS_SECURITY_KEYSTORE', LaunchConfiguration('keystore')))),
        Node(
            package='dystream_ros', executable='audio_capture_node', name='microphone', output='screen',
            ros_arguments=['--enclave', '/dystream/capture'],
            parameters=[{'device': LaunchConfiguration('microphone'), 'sample_rate': 16000, 'channels': 1}],
            remappings=[('audio', 'partner_audio'), ('audio_info', 'partner_audio_info')]),
        Node(
            package='dystream_ros', executable='audio_player_node', name='speaker', output='screen',
            ros_arguments=['--enclave', '/dystream/player'],
            condition=IfCondition(LaunchConfiguration('play_tts')),
            parameters=[{'device': LaunchConfiguration('speaker'),
                         'output_latency_ms': LaunchConfiguration('speaker_latency_ms')}],
            remappings=[('self_audio', LaunchConfiguration('tts_audio'))]),
        Node(
            package='dystream_ros', executable='dystream_node', name='dystream_node', output='screen',
            parameters=[LaunchConfiguration('params_file')], ros_arguments=['--enclave', '/dystream/face'],
            remappings=[('self_audio', LaunchConfiguration('tts_audio'))]),
    ])
