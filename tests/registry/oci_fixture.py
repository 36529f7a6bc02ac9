"""Fixtures for the registry adapter's test (tests/it/registry.rs), as files a real client
pushes: OCI image layouts (https://github.com/opencontainers/image-spec/blob/main/image-layout.md).

  oci_fixture.py images DIR
      A layout holding a multi-platform image tagged 1.0.0 (an image index of linux/amd64 and
      linux/arm64, one layer each, as a build tool leaves it) and a plain image tagged 1.0.1.
      Prints {"1.0.0": <index digest>, "1.0.1": <image digest>}.

  oci_fixture.py sign DIR DIGEST REFERENCE KEY
      A layout holding cosign's signature of DIGEST, tagged sha256-<hex>.sig, as cosign's
      specs/SIGNATURE_SPEC.md lays it out: a manifest whose one layer is the "simple signing"
      payload (critical.identity.docker-reference, critical.image.docker-manifest-digest,
      critical.type), media type application/vnd.dev.cosign.simplesigning.v1+json, with the
      base64 ECDSA P-256/SHA-256 signature of the payload's bytes in the layer annotation
      dev.cosignproject.cosign/signature; the config is cosign's (its diff_ids name the
      payload). KEY is a PKCS #8 PEM private key, made (with KEY.pub beside it) if absent.
      Prints the tag.
"""
import base64
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def blob(root: str, data: bytes, media_type: str) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{root}/blobs/sha256", exist_ok=True)
    with open(f"{root}/blobs/sha256/{digest}", "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def finish(root: str, tagged: list) -> None:
    with open(f"{root}/index.json", "w") as f:
        json.dump({"schemaVersion": 2, "manifests": tagged}, f)
    with open(f"{root}/oci-layout", "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)


def tag(descriptor: dict, name: str) -> dict:
    return {**descriptor, "annotations": {"org.opencontainers.image.ref.name": name}}


def image(root: str, arch: str, text: str) -> dict:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    diff_id = "sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()
    layer = blob(root, gzip.compress(raw.getvalue(), mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip")
    config = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": blob(root, json.dumps(config).encode(), OCI_CONFIG), "layers": [layer]}
    return blob(root, json.dumps(manifest).encode(), OCI_MANIFEST)


def images(root: str) -> None:
    amd64, arm64 = image(root, "amd64", "hello amd64"), image(root, "arm64", "hello arm64")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {**amd64, "platform": {"architecture": "amd64", "os": "linux"}},
        {**arm64, "platform": {"architecture": "arm64", "os": "linux"}}]}
    top = blob(root, json.dumps(index).encode(), OCI_INDEX)
    single = image(root, "amd64", "hello 1.0.1")
    finish(root, [tag(top, "1.0.0"), tag(single, "1.0.1")])
    print(json.dumps({"1.0.0": top["digest"], "1.0.1": single["digest"]}))


def key(path: str) -> ec.EllipticCurvePrivateKey:
    if os.path.exists(path):
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), password=None)
    k = ec.generate_private_key(ec.SECP256R1())
    with open(path, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    with open(path + ".pub", "wb") as f:
        f.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    return k


def sign(root: str, digest: str, reference: str, key_path: str) -> None:
    # cosign marshals its payload from Go structs: keys in this order, no spaces.
    payload = json.dumps({"critical": {"identity": {"docker-reference": reference},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"},
                          "optional": None}, separators=(",", ":")).encode()
    signature = key(key_path).sign(payload, ec.ECDSA(hashes.SHA256()))
    layer = blob(root, payload, "application/vnd.dev.cosign.simplesigning.v1+json")
    layer["annotations"] = {"dev.cosignproject.cosign/signature": base64.b64encode(signature).decode()}
    config = {"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
              "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
              "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": blob(root, json.dumps(config).encode(), OCI_CONFIG), "layers": [layer]}
    name = digest.replace(":", "-", 1) + ".sig"
    finish(root, [tag(blob(root, json.dumps(manifest).encode(), OCI_MANIFEST), name)])
    print(name)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"images": images, "sign": sign}[command](*args)
