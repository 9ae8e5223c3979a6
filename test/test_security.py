"""A secure graph (issue 16): only processes with an enclave of the keystore can feed the face or watch it.

The face node runs under DDS-Security (``ROS_SECURITY_STRATEGY=Enforce``) in a throwaway copy of the venv whose Fast
DDS is the prebuilt SECURITY=ON one of third_party/secure_middleware (swapped in by tools/secure_middleware.sh, as
``make secure-middleware`` does to .venv after building it). This test process stays on the stock middleware: it
is the intruder on the same domain. Processes that may hang in DDS are stopped with SIGKILL.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from support.clocked_microphone import ClockedMicrophone
from support.face_graph import ROOT, s16
from support.launch_runner import load, processes

from dystream_ros.apps.bags import write_conversation_bag
from dystream_ros.apps.virtual_speaker import Dac, add_virtual_speaker
from dystream_ros.cli import main as cli
from dystream_ros.data.corpus import conversation
from dystream_ros.data.real_speech import LIBRIVOX_DIR
from dystream_ros.data.sample import read_any_audio
from dystream_ros.errors import ConfigError
from dystream_ros.msg import AudioData, AudioDataStamped, FaceMotion
from dystream_ros.security.keystore import add_enclave, create_keystore, grant_for
from dystream_ros.security.middleware import SECURITY_MARKERS, has_security, loaded_fastrtps_libraries
from dystream_ros.security.policy import OUR_ENCLAVES, dds_topic, load_policy

# the prebuilt libraries, or those that `make secure-middleware` built (DYSTREAM_SECURE_OVERLAY=build/.../overlay)
OVERLAY = Path(os.environ.get('DYSTREAM_SECURE_OVERLAY')
               or ROOT / 'third_party' / 'secure_middleware' / 'overlay-fastdds-3.2.2-security.tar.gz')
ROBOT = ROOT / 'test' / 'support' / 'secure_robot.py'
FACE_PARAMS = ('backend:=onnx', 'image_size:=256', 'audio_reliability:=reliable')
VOICE_S = 4.0

pytestmark = pytest.mark.realtime


@pytest.fixture(scope='module')
def secure_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a throwaway venv: the test venv's files linked, the Fast DDS libraries swapped for secure ones."""
    venv = tmp_path_factory.mktemp('secure') / 'venv'
    subprocess.run(['cp', '-as', str(Path(sys.prefix).resolve()), str(venv)], check=True)
    done = subprocess.run(['bash', str(ROOT / 'tools' / 'secure_middleware.sh'), 'install', str(venv), str(OVERLAY)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return venv / 'bin' / 'python'


@pytest.fixture(scope='module')
def keystore(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A keystore for this test's domain: the face, a robot allowed to speak to it and watch it, and the example
    controller of config/security_policy.yaml (not allowed to speak)."""
    folder = tmp_path_factory.mktemp('keystore') / 'keystore'
    create_keystore(folder, int(os.environ['ROS_DOMAIN_ID']))
    policy = folder.parent / 'policy.yaml'
    policy.write_text('/test/robot:\n  node: robot_around_the_face\n  publish: [self_audio]\n'
                      '  subscribe: [face/motion, face/image, /diagnostics]\n')
    for enclave, grants in (('/dystream/face', None), ('/test/robot', policy), ('/robot/controller', None)):
        add_enclave(folder, enclave, grant_for(enclave, grants, {}))
    return folder


def secure_env(keystore: Path) -> dict[str, str]:
    """This process's environment with security on, less the library path that the ROS wheels' bootstrap set for
    this venv (a process of the throwaway venv sets its own, to its own libraries)."""
    env = {key: value for key, value in os.environ.items()
           if key not in ('LD_LIBRARY_PATH', '_ROS_WHEELS_BOOTSTRAP_COMPLETE')}
    return {**env, 'ROS_SECURITY_ENABLE': 'true', 'ROS_SECURITY_STRATEGY': 'Enforce',
            'ROS_SECURITY_KEYSTORE': str(keystore)}


def start_face(python: Path, env: dict[str, str], enclave: str = '/dystream/face') -> subprocess.Popen:
    return subprocess.Popen([str(python), '-m', 'dystream_ros.nodes.dystream_node', '--ros-args', '--enclave', enclave,
                             *(arg for param in FACE_PARAMS for arg in ('-p', param))],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def face_exit(python: Path, env: dict[str, str]) -> tuple[int | None, str]:
    """Start the face and wait up to a minute for it to exit: its exit status (None if it ran on) and its output."""
    face = start_face(python, env)
    try:
        code = face.wait(60)
    except subprocess.TimeoutExpired:
        code = None
    return code, stop(face)


def stop(process: subprocess.Popen) -> str:
    """SIGINT, then SIGKILL after 10 s (a process stuck in DDS ignores the first); what it printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.communicate()[0] or ''


class Intruder:
    """A participant on the same domain without security: it watches the face and speaks to it."""

    def __init__(self) -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('intruder', context=self.context)
        self.received = {'motion': 0, 'image': 0}
        self.node.create_subscription(FaceMotion, 'face/motion', lambda _: self._count('motion'), QoSProfile(depth=10))
        self.node.create_subscription(Image, 'face/image', lambda _: self._count('image'), qos_profile_sensor_data)
        self.voice = self.node.create_publisher(AudioDataStamped, 'self_audio',
                                                QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def _count(self, what: str) -> None:
        self.received[what] += 1

    def speak(self, audio: np.ndarray) -> None:
        """Say ``audio`` in 20 ms messages, in real time."""
        data, start = s16(audio), time.monotonic()
        for k in range(0, len(data) - 640 + 1, 640):
            while time.monotonic() < start + k / 32000:
                self.executor.spin_once(timeout_sec=0.002)
            self.voice.publish(AudioDataStamped(audio=AudioData(data=data[k:k + 640])))

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


@pytest.fixture(scope='module')
def voice(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    """A real voice (LibriVox, from pocketsphinx's test data), and the same in a file for the robot process."""
    audio = read_any_audio(sorted(LIBRIVOX_DIR.glob('*.wav'))[0])[:int(VOICE_S * 16000)].astype(np.float32)
    audio *= 0.5 / max(float(np.abs(audio).max()), 1e-6)
    path = tmp_path_factory.mktemp('voice') / 'voice.npy'
    np.save(path, audio)
    return audio, path


def robot_session(python: Path, env: dict[str, str], voice_file: Path, ros_args: list[str],
                  others: list[subprocess.Popen], meanwhile: Callable[[], None] = lambda: None) -> dict:
    """Run secure_robot.py: once it sees the face, ``meanwhile()``, then it speaks; what it saw (its JSON). The
    ``others`` (the face's processes) are stopped afterwards, and killed if they hang."""
    log = voice_file.with_name('robot.log').open('w+')
    robot = subprocess.Popen([str(python), str(ROBOT), 'speak', str(voice_file), '--ros-args', *ros_args], cwd=ROOT,
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)

    def printed() -> str:
        log.seek(0)
        return log.read()[-3000:] + ''.join(stop(other)[-3000:] for other in others)

    try:
        ready = robot.stdout.readline()  # the robot saw the face's first frame (or gave up after 180 s)
        assert ready.strip() == 'ready', ready + stop(robot) + printed()
        meanwhile()
        robot.stdin.write('go\n')
        robot.stdin.flush()
        lines = robot.communicate(timeout=60)[0].strip().splitlines()
        assert lines, printed()
        return {**json.loads(lines[-1]), 'logs': [stop(other) for other in others]}
    finally:
        log.close()
        for process in (robot, *others):
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope='module')
def secure_run(secure_python: Path, keystore: Path, voice: tuple[np.ndarray, Path]) -> dict:
    """The face under Enforce; the intruder speaks for VOICE_S, then the authorised robot does. What each saw."""
    env = secure_env(keystore)
    face = start_face(secure_python, env)
    intruder = Intruder()
    try:
        def intrude() -> None:
            intruder.speak(voice[0])
            intruder.executor.spin_once(timeout_sec=1.0)

        seen = robot_session(secure_python, env, voice[1], ['--enclave', '/test/robot'], [face], intrude)
        return {**seen, 'intruder': dict(intruder.received)}
    finally:
        intruder.close()


def test_an_authorised_robot_drives_the_face_and_sees_it(secure_run: dict) -> None:
    during = secure_run['during']
    assert during['frames'] > 50 and during['images'] > 50, secure_run
    assert max(during['self_audio_per_s']) > 20  # 50 messages a second of speech reached the face
    assert during['jaw_max'] > 0.3  # and it spoke with them


def test_a_process_without_security_neither_sees_the_face_nor_gets_its_voice_in(secure_run: dict) -> None:
    assert secure_run['intruder'] == {'motion': 0, 'image': 0}
    before = secure_run['before']
    assert before['frames'] > 50, secure_run  # the face ran while the intruder spoke
    assert max(before['self_audio_per_s'], default=0.0) == 0.0  # no message of the intruder's reached it
    assert before['jaw_max'] < 0.2  # and the face kept its mouth shut


def test_the_face_uses_exactly_the_topics_its_enclave_grants(secure_run: dict) -> None:
    """The permissions are least privilege: what the node publishes and subscribes (with the default neck output)
    is what it is granted."""
    grant = OUR_ENCLAVES['/dystream/face']
    used = {'publish': {dds_topic(t, 'dystream_node') for t in secure_run['graph']['publishes']},
            'subscribe': {dds_topic(t, 'dystream_node') for t in secure_run['graph']['subscribes']}}
    granted = {'publish': {dds_topic(t, grant.node) for t in grant.publish},
               'subscribe': {dds_topic(t, grant.node) for t in grant.subscribe}}
    common = {'rt/rosout', 'rt/parameter_events'}
    assert used['publish'] - common == granted['publish']
    assert used['subscribe'] - common == granted['subscribe']


def test_an_enclave_not_granted_self_audio_cannot_publish_it(secure_python: Path, keystore: Path) -> None:
    def publish(topic: str) -> str:
        as_controller = ['--ros-args', '--enclave', '/robot/controller', '-r', '__node:=controller']
        done = subprocess.run(['timeout', '-s', 'KILL', '60', str(secure_python), str(ROBOT), 'publish', topic,
                               *as_controller], cwd=ROOT, env=secure_env(keystore), capture_output=True, text=True,
                              check=False)
        return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-2000:]

    assert publish('self_audio').startswith('refused')
    assert publish('gaze_target') == 'created'  # the controller's own grant works


def test_a_face_with_tampered_permissions_does_not_start(secure_python: Path, keystore: Path,
                                                         tmp_path: Path) -> None:
    forged = tmp_path / 'keystore'
    subprocess.run(['cp', '-r', str(keystore), str(forged)], check=True)
    permissions = forged / 'enclaves' / 'dystream' / 'face' / 'permissions.p7s'
    permissions.write_text(permissions.read_text().replace('<topic>rt/face/image</topic>',
                                                           '<topic>rt/*</topic>', 1))
    code, log = face_exit(secure_python, secure_env(forged))
    assert code == 1, log
    assert 'dystream_node: cannot join the ROS graph' in log and 'enclave' in log


@pytest.mark.parametrize('strategy', ['Enforce', 'Permissive'])
def test_a_face_asked_to_be_secure_refuses_to_run_without_security(keystore: Path, strategy: str) -> None:
    """On the stock PyPI middleware (this venv), or when a missing enclave would start unsecured."""
    libraries = loaded_fastrtps_libraries()
    if strategy == 'Enforce' and all(has_security(path, SECURITY_MARKERS[name]) for name, path in libraries.items()):
        pytest.skip('this venv has a secure middleware (make secure-middleware): nothing to refuse')
    env = {**secure_env(keystore), 'ROS_SECURITY_STRATEGY': strategy}
    code, log = face_exit(Path(sys.executable), env)
    assert code == 1, log
    assert 'refusing to start' in log
    assert ('make secure-middleware' if strategy == 'Enforce' else 'ROS_SECURITY_STRATEGY=Enforce') in log


def test_the_keystore_verifies_with_openssl(keystore: Path) -> None:
    """Every enclave's certificate is issued by the keystore's CA, and its governance and permissions are signed by
    it; the keys are readable by their owner only."""
    ca = keystore / 'public' / 'ca.cert.pem'
    for enclave in ('dystream/face', 'test/robot', 'robot/controller'):
        folder = keystore / 'enclaves' / enclave
        subprocess.run(['openssl', 'verify', '-CAfile', str(ca), str(folder / 'cert.pem')], check=True,
                       capture_output=True)
        for signed in ('governance.p7s', 'permissions.p7s'):
            subprocess.run(['openssl', 'smime', '-verify', '-in', str(folder / signed), '-CAfile', str(ca),
                            '-out', os.devnull], check=True, capture_output=True)
        assert (folder / 'key.pem').stat().st_mode & 0o077 == 0
        subject = subprocess.run(['openssl', 'x509', '-in', str(folder / 'cert.pem'), '-noout', '-subject'],
                                 capture_output=True, text=True, check=True).stdout
        assert subject.strip() == f'subject=CN = /{enclave}'
    forged = (keystore / 'enclaves' / 'dystream' / 'face' / 'permissions.p7s').read_text().replace('DENY', 'ALLOW')
    done = subprocess.run(['openssl', 'smime', '-verify', '-CAfile', str(ca), '-out', os.devnull],
                          input=forged, capture_output=True, text=True, check=False)
    assert done.returncode != 0  # a permissions file changed by hand no longer verifies


def test_a_policy_file_grants_what_it_says_and_bad_ones_are_refused_with_the_reason(tmp_path: Path) -> None:
    policy = tmp_path / 'policy.yaml'
    policy.write_text('/robot/tts:\n  node: tts\n  publish: [self_audio]\n')
    assert grant_for('/robot/tts', policy, {}).publish == ('self_audio',)
    microphone = grant_for('/dystream/capture', policy, {'__node': 'microphone', 'audio': 'partner_audio'})
    assert (microphone.node, microphone.publish) == ('microphone', ('partner_audio', 'audio_info'))
    for text, reason in (('/robot/tts: {publish: [self_audio]}\n', 'needs at least "node'),
                         ('/robot/tts: {node: tts, publsh: [x]}\n', 'unknown keys'),
                         ('robot: {node: tts}\n', 'absolute paths'), ('[1, 2]\n', 'mapping')):
        policy.write_text(text)
        with pytest.raises(ConfigError, match=reason):
            grant_for('/robot/tts', policy, {})
    with pytest.raises(ConfigError, match='no grant for enclave /robot/arm'):
        grant_for('/robot/arm', None, {})


def test_the_shipped_policy_file_loads() -> None:
    grants = load_policy(ROOT / 'config' / 'security_policy.yaml')
    assert grants['/robot/tts'].publish == ('self_audio', 'self_audio_info')
    assert 'self_audio' not in grants['/robot/controller'].publish


def test_the_latency_benchmark_measures_the_face_with_and_without_security_in_one_run(
        secure_python: Path, tmp_path: Path) -> None:
    """`dystream bench e2e --secure` on a short conversation: both runs deliver every image, the secure one with
    the node, the replay and the listener each in its enclave (docs/performance.md has the full run's figures)."""
    robot, _ = conversation(0, 'heldout', 3, 6.0)
    bag = tmp_path / 'conversation'
    write_conversation_bag(bag, robot.self_audio, robot.partner_audio, start_ns=1_700_000_000 * 10**9)
    env = {key: value for key, value in secure_env(tmp_path).items() if not key.startswith('ROS_SECURITY')}
    done = subprocess.run(['timeout', '-s', 'KILL', '400', str(secure_python), '-m', 'dystream_ros.cli', 'bench', 'e2e',
                           '--secure', '--bag', str(bag), '--size', '256', '--backend', 'onnx', '--json'],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'SECURITY' not in done.stderr  # no sample failed to decode
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for run in (report['secure'], report['baseline_without_security']):
        assert run['images_measured'] > 100 and run['images_missing_percent'] < 5, report
    assert report['protection'] == 'data' and report['latency_p50_ratio_vs_baseline'] > 0


def readme_keystore_commands() -> list[list[str]]:
    """The `dystream keystore enclave` commands for robot.launch.py's processes, as the README gives them."""
    text = (ROOT / 'README.md').read_text().replace('\\\n', ' ')
    ours = 'dystream keystore enclave ~/robot_keystore /dystream/'
    return [line.split()[4:] for line in text.splitlines() if line.startswith(ours)]  # after the keystore


def test_robot_launch_runs_secure_with_the_keystore_the_readme_makes(
        secure_python: Path, voice: tuple[np.ndarray, Path], tmp_path: Path) -> None:
    """robot.launch.py with security:=true: the microphone feeds the face, a TTS (its own enclave) feeds the face,
    and every process (the speaker's too) starts enforced in the enclave the README's commands made for it. (What the
    speaker plays of a voice stamped "now" is test_audio_player's to check: here it varies with the machine.)"""
    keystore = tmp_path / 'keystore'
    policy = tmp_path / 'policy.yaml'
    policy.write_text('/test/tts:\n  node: robot_around_the_face\n  publish: [/tts/audio]\n'
                      '  subscribe: [face/motion, face/image, /diagnostics]\n')
    commands = readme_keystore_commands()
    assert [c[0] for c in commands] == ['/dystream/face', '/dystream/capture', '/dystream/player']
    assert cli(['keystore', 'create', str(keystore)]) == 0
    for command in [*commands, ['/test/tts', '--policy', str(policy)]]:
        assert cli(['keystore', 'enclave', str(keystore), *command]) == 0
    microphone = ClockedMicrophone(tmp_path)
    speaker = Dac(add_virtual_speaker(tmp_path))
    parameters = tmp_path / 'face.yaml'  # the shipped parameters, with FACE_PARAMS' lighter backend and image
    parameters.write_text((ROOT / 'config' / 'default.yaml').read_text().replace('backend: torch', 'backend: onnx')
                          .replace('image_size: 512', 'image_size: 256'))
    arguments = {'security': 'true', 'keystore': str(keystore), 'microphone': 'clockedmic', 'speaker': 'speaker',
                 'params_file': str(parameters)}
    launched, _ = processes(load(ROOT / 'launch' / 'robot.launch.py'), arguments, prefix=secure_python.parent.parent)
    env = {**secure_env(keystore), 'HOME': str(tmp_path)}
    env = {key: value for key, value in env.items() if not key.startswith('ROS_SECURITY')}  # the launch file's
    nodes = [subprocess.Popen([str(secure_python), *process.argv], env={**env, **process.env}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for process in launched]
    try:
        seen = robot_session(secure_python, {**env, **launched[0].env}, voice[1],
                             ['--enclave', '/test/tts', '-r', 'self_audio:=/tts/audio'], nodes)
    finally:
        speaker.close()
        microphone.close()
    assert max(seen['during']['partner_audio_per_s']) > 50, seen  # the microphone's 100 a second reached the face
    assert max(seen['during']['self_audio_per_s']) > 20 and seen['during']['jaw_max'] > 0.3, seen  # the TTS too
    assert all('refusing' not in log and 'cannot join' not in log for log in seen['logs']), seen['logs']
