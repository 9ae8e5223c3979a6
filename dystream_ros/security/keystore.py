"""``dystream keystore``: an SROS2 keystore made with the ``openssl`` command line alone (sros2 is not on PyPI).

One EC P-256 certificate authority signs the enclaves' identities and their permissions. The layout is the one
rcl reads with ``ROS_SECURITY_KEYSTORE`` (``public/``, ``private/``, ``enclaves/<enclave>/``). The governance
makes every topic's data encrypted (the shared-memory segments that carry the face images are world-readable
files otherwise), discovery and liveliness too, and admits no unauthenticated participant; ``--protection full``
also signs every RTPS message and encrypts the submessage headers (about twice the CPU, docs/performance.md).

Certificates are valid from 2020 (robots boot with wrong clocks) to ``VALID_UNTIL``. Keep ``private/`` (the CA's
key) off the robot: copy ``public/`` and the robot's enclaves only. Key files are readable by their owner only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

from dystream_ros.errors import ConfigError
from dystream_ros.resources import share_path
from dystream_ros.security.policy import OUR_ENCLAVES, Grant, check_enclave, dds_topic, load_policy, remapped

VALID_FROM = ('20200101000000Z', '2020-01-01T00:00:00')
VALID_UNTIL = ('20360101000000Z', '2036-01-01T00:00:00')
CA_NAME = 'dystream_ros keystore CA'
PROTECTION = {  # governance protection kinds: rtps, discovery and liveliness, metadata, data
    'data': {'rtps': 'NONE', 'discovery': 'ENCRYPT', 'metadata': 'NONE', 'data': 'ENCRYPT'},
    'full': {'rtps': 'SIGN', 'discovery': 'ENCRYPT', 'metadata': 'ENCRYPT', 'data': 'ENCRYPT'},
}
# Topics every rclpy node uses: the graph's discovery information, the log, parameter changes.
COMMON_TOPICS = ('ros_discovery_info', 'rt/rosout', 'rt/parameter_events')


def openssl(*args: str, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    """Run ``openssl`` with ``args``; its output, or ConfigError with what it said."""
    if shutil.which('openssl') is None:
        msg = 'the openssl command is not installed (Debian: apt install openssl)'
        raise ConfigError(msg)
    done = subprocess.run(['openssl', *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    if done.returncode != 0:
        msg = f'openssl {args[0]} failed: {done.stderr.decode(errors="replace").strip()}'
        raise ConfigError(msg)
    return done.stdout


def _private_key(path: Path) -> None:
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', str(path))
    path.chmod(0o600)


def _sign_certificate(keystore: Path, csr: Path, out: Path, *, self_sign: bool = False) -> None:
    """Issue ``out`` from ``csr`` with the CA (or the CA's own certificate), back-dated to ``VALID_FROM``."""
    private = keystore / 'private'
    with tempfile.TemporaryDirectory() as work:
        # `openssl ca` is the command that takes a start date; it wants a database and a serial file.
        (Path(work) / 'index.txt').write_text('')
        config = Path(work) / 'ca.cnf'
        config.write_text(
            '[ca]\ndefault_ca = keystore\n[keystore]\n'
            f'database = {work}/index.txt\nnew_certs_dir = {work}\nrand_serial = yes\n'
            'default_md = sha256\npolicy = any_name\nunique_subject = no\ncopy_extensions = none\n'
            f'x509_extensions = {"ca_extensions" if self_sign else "identity_extensions"}\n'
            '[any_name]\ncommonName = supplied\n'
            '[ca_extensions]\nbasicConstraints = critical, CA:true\nkeyUsage = critical, keyCertSign, cRLSign, '
            'digitalSignature\nsubjectKeyIdentifier = hash\n'
            '[identity_extensions]\nbasicConstraints = critical, CA:false\nkeyUsage = critical, digitalSignature, '
            'keyAgreement\nauthorityKeyIdentifier = keyid\n')
        openssl('ca', '-batch', '-config', str(config), '-in', str(csr), '-out', str(out), '-notext',
                '-startdate', VALID_FROM[0], '-enddate', VALID_UNTIL[0], '-keyfile', str(private / 'ca.key.pem'),
                *(['-selfsign'] if self_sign else ['-cert', str(keystore / 'public' / 'ca.cert.pem')]))


def _request(key: Path, common_name: str, out: Path) -> None:
    """A certificate request for ``common_name``, given in a config file: enclave names contain '/'."""
    with tempfile.NamedTemporaryFile('w', suffix='.cnf') as config:
        config.write(f'[req]\nprompt = no\ndistinguished_name = subject\n[subject]\nCN = {common_name}\n')
        config.flush()
        openssl('req', '-new', '-key', str(key), '-config', config.name, '-out', str(out))


def _smime_sign(keystore: Path, document: Path, out: Path) -> None:
    """Clear-sign an XML document with the CA (what DDS-Security wants for governance and permissions)."""
    openssl('smime', '-sign', '-text', '-md', 'sha256', '-in', str(document), '-out', str(out),
            '-signer', str(keystore / 'public' / 'ca.cert.pem'), '-inkey', str(keystore / 'private' / 'ca.key.pem'))


def governance_xml(domain_id: int, protection: str) -> str:
    """Governance for one domain: authenticated participants only, read and write access control on every topic."""
    kinds = PROTECTION[protection]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-Security/20170801/omg_shared_ca_governance.xsd">
  <domain_access_rules>
    <domain_rule>
      <domains><id>{domain_id}</id></domains>
      <allow_unauthenticated_participants>false</allow_unauthenticated_participants>
      <enable_join_access_control>true</enable_join_access_control>
      <discovery_protection_kind>{kinds['discovery']}</discovery_protection_kind>
      <liveliness_protection_kind>{kinds['discovery']}</liveliness_protection_kind>
      <rtps_protection_kind>{kinds['rtps']}</rtps_protection_kind>
      <topic_access_rules>
        <topic_rule>
          <topic_expression>*</topic_expression>
          <enable_discovery_protection>true</enable_discovery_protection>
          <enable_liveliness_protection>true</enable_liveliness_protection>
          <enable_read_access_control>true</enable_read_access_control>
          <enable_write_access_control>true</enable_write_access_control>
          <metadata_protection_kind>{kinds['metadata']}</metadata_protection_kind>
          <data_protection_kind>{kinds['data']}</data_protection_kind>
        </topic_rule>
      </topic_access_rules>
    </domain_rule>
  </domain_access_rules>
</dds>
"""


def permissions_xml(enclave: str, grant: Grant, domain_id: int) -> str:
    """Permissions of one enclave: its topics and its own services, every other topic denied."""
    publish = [*COMMON_TOPICS, *(dds_topic(t, grant.node) for t in grant.publish), f'rr/{grant.node}/*',
               *(f'rq/{other}/*' for other in grant.calls)]
    subscribe = [*COMMON_TOPICS, *(dds_topic(t, grant.node) for t in grant.subscribe), f'rq/{grant.node}/*',
                 *(f'rr/{other}/*' for other in grant.calls)]

    def topics(names: list[str]) -> str:
        return ''.join(f'\n            <topic>{escape(name)}</topic>' for name in dict.fromkeys(names))

    return f"""<?xml version="1.0" encoding="UTF-8"?>
<dds xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
     xsi:noNamespaceSchemaLocation="http://www.omg.org/spec/DDS-Security/20170801/omg_shared_ca_permissions.xsd">
  <permissions>
    <grant name="{escape(enclave)}">
      <subject_name>CN={escape(enclave)}</subject_name>
      <validity><not_before>{VALID_FROM[1]}</not_before><not_after>{VALID_UNTIL[1]}</not_after></validity>
      <allow_rule>
        <domains><id>{domain_id}</id></domains>
        <publish>
          <topics>{topics(publish)}
          </topics>
        </publish>
        <subscribe>
          <topics>{topics(subscribe)}
          </topics>
        </subscribe>
      </allow_rule>
      <default>DENY</default>
    </grant>
  </permissions>
</dds>
"""


def create_keystore(keystore: Path, domain_id: int = 0, protection: str = 'data') -> None:
    """Make the CA and the signed governance in a new (or empty) folder ``keystore``."""
    if keystore.exists() and any(keystore.iterdir()):
        msg = f'{keystore} is not empty: a keystore is made once (add enclaves with `dystream keystore enclave`)'
        raise ConfigError(msg)
    public, private, enclaves = keystore / 'public', keystore / 'private', keystore / 'enclaves'
    for folder in (public, private, enclaves):
        folder.mkdir(parents=True, exist_ok=True)
    private.chmod(0o700)
    _private_key(private / 'ca.key.pem')
    _request(private / 'ca.key.pem', CA_NAME, private / 'ca.csr.pem')
    _sign_certificate(keystore, private / 'ca.csr.pem', public / 'ca.cert.pem', self_sign=True)
    (private / 'ca.csr.pem').unlink()
    for role in ('identity_ca', 'permissions_ca'):  # one CA in both roles
        shutil.copyfile(public / 'ca.cert.pem', public / f'{role}.cert.pem')
        os.symlink('ca.key.pem', private / f'{role}.key.pem')
    (enclaves / 'governance.xml').write_text(governance_xml(domain_id, protection))
    _smime_sign(keystore, enclaves / 'governance.xml', enclaves / 'governance.p7s')


def _domain_of(keystore: Path) -> int:
    import re

    found = re.search(r'<domains><id>(\d+)</id>', (keystore / 'enclaves' / 'governance.xml').read_text())
    return int(found.group(1)) if found else 0


def add_enclave(keystore: Path, enclave: str, grant: Grant) -> Path:
    """Make (or remake) ``enclave``'s key, certificate and signed permissions; return its folder."""
    check_enclave(enclave)
    if not (keystore / 'private' / 'ca.key.pem').is_file():
        msg = f'{keystore} has no CA key (private/ca.key.pem): make it with `dystream keystore create`'
        raise ConfigError(msg)
    folder = keystore / 'enclaves' / enclave.lstrip('/')
    folder.mkdir(parents=True, exist_ok=True)
    _private_key(folder / 'key.pem')
    with tempfile.TemporaryDirectory() as work:
        csr = Path(work) / 'request.pem'
        _request(folder / 'key.pem', enclave, csr)
        _sign_certificate(keystore, csr, folder / 'cert.pem')
    for role in ('identity_ca', 'permissions_ca'):
        shutil.copyfile(keystore / 'public' / f'{role}.cert.pem', folder / f'{role}.cert.pem')
    shutil.copyfile(keystore / 'enclaves' / 'governance.p7s', folder / 'governance.p7s')
    (folder / 'permissions.xml').write_text(permissions_xml(enclave, grant, _domain_of(keystore)))
    _smime_sign(keystore, folder / 'permissions.xml', folder / 'permissions.p7s')
    return folder


def grant_for(enclave: str, policy: Path | None, remaps: dict[str, str]) -> Grant:
    """The grant of ``enclave``: one of ours, or the user's from ``policy``, with ``remaps`` applied."""
    policy = policy or share_path('config', 'security_policy.yaml')
    known = {**OUR_ENCLAVES, **(load_policy(policy) if policy.is_file() else {})}
    if enclave not in known:
        msg = (f'no grant for enclave {enclave}: ours are {", ".join(OUR_ENCLAVES)}; add yours to a policy file '
               f'({policy}) and pass it with --policy')
        raise ConfigError(msg)
    return remapped(known[enclave], remaps)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dystream keystore``."""
    sub = parser.add_subparsers(dest='action', required=True, metavar='ACTION')
    create = sub.add_parser('create', help='make a keystore: its CA and governance')
    create.add_argument('keystore', type=Path)
    create.add_argument('--domain', type=int, default=int(os.environ.get('ROS_DOMAIN_ID') or 0),
                        help='the ROS domain id it secures (default: ROS_DOMAIN_ID or 0)')
    create.add_argument('--protection', choices=sorted(PROTECTION), default='data',
                        help='data: encrypt every message\'s data, discovery and liveliness (default); full: also '
                             'sign every RTPS message and encrypt submessage headers')
    enclave = sub.add_parser('enclave', help="add enclaves: a key, a certificate and least-privilege permissions")
    enclave.add_argument('keystore', type=Path)
    enclave.add_argument('enclaves', nargs='+', metavar='ENCLAVE',
                         help=f'ours: {", ".join(OUR_ENCLAVES)}; others from --policy')
    enclave.add_argument('--policy', type=Path, default=None,
                         help="YAML grants of the user's own processes (default: config/security_policy.yaml)")
    enclave.add_argument('--remap', action='append', default=[], metavar='FROM:=TO',
                         help='as the launch file remaps a topic (self_audio:=/tts/audio) or names the node '
                              '(__node:=microphone); repeatable')


def run(args: argparse.Namespace) -> int:
    """``dystream keystore create|enclave``."""
    if args.action == 'create':
        create_keystore(args.keystore, args.domain, args.protection)
        print(f'keystore: {args.keystore} (domain {args.domain}, {args.protection} protection); keep '
              f'{args.keystore / "private"} off the robot')
        return 0
    remaps = {}
    for rule in args.remap:
        source, _, target = rule.partition(':=')
        if not source or not target:
            msg = f'--remap takes FROM:=TO, got {rule!r}'
            raise ConfigError(msg)
        remaps[source] = target
    for name in args.enclaves:
        folder = add_enclave(args.keystore, name, grant_for(name, args.policy, remaps))
        print(f'enclave {name}: {folder}')
    return 0
