"""Documents the emulator hands out: PDFs, signature containers, validation reports.

Nothing here is cryptographically signed. A "signed" PDF is the original plus an
incremental update per signature (so the bytes change and the file still opens); a
container is a zip with the ``mimetype`` entry first and one XML file per signature.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import re
import zipfile
from datetime import datetime
from xml.sax.saxutils import escape

from attrs import frozen

__all__ = [
    "CONTAINER_MIMETYPES",
    "Mark",
    "build_container",
    "is_pdf",
    "make_pdf",
    "mime_type_of",
    "sign_pdf",
    "validation_report",
]

CONTAINER_MIMETYPES = {
    "asice": "application/vnd.etsi.asic-e+zip",
    "bdoc": "application/vnd.etsi.asic-e+zip",
    "edoc": "application/vnd.etsi.asic-e+zip",
    "adoc": "application/vnd.lt.archyvai.adoc-2008",
    "adoc.cedoc": "application/vnd.lt.archyvai.adoc-2008",
}
"""The ``mimetype`` entry written into each container type."""

_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")
_SIZE = re.compile(rb"/Size\s+(\d+)")
_ROOT = re.compile(rb"/Root\s+(\d+\s+\d+\s+R)")


@frozen(kw_only=True)
class Mark:
    """One signature or e-seal applied to a document."""

    kind: str
    """``"signature"`` or ``"seal"``."""
    who: str
    """Who signed: the participant token, or ``"seal"``."""
    time: datetime
    """When it was applied."""
    reason: str | None = None
    """``custom_reason`` if one was given."""


def is_pdf(data: bytes) -> bool:
    """True if ``data`` starts with the ``%PDF-`` magic."""
    return data[:5] == b"%PDF-"


def mime_type_of(name: str) -> str:
    """A MIME type guessed from a file name (``application/octet-stream`` otherwise)."""
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def _pdf_text(value: str) -> str:
    ascii_only = value.encode("ascii", "replace").decode("ascii")
    return ascii_only.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(lines: list[str] | tuple[str, ...] = ("Hello from the emulator",)) -> bytes:
    """A small valid one-page PDF showing ``lines`` of text."""
    text = ["BT /F1 12 Tf 72 760 Td 16 TL"]
    text += [f"({_pdf_text(line)}) '" for line in lines]
    text.append("ET")
    stream = "\n".join(text).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def sign_pdf(pdf: bytes, mark: Mark) -> bytes:
    """``pdf`` plus an incremental update recording ``mark`` (falls back to a comment)."""
    note = f"{mark.kind} by {mark.who} at {mark.time.isoformat()}"
    if mark.reason:
        note += f" ({mark.reason})"
    base = pdf if pdf.endswith(b"\n") else pdf + b"\n"
    tail = base[-4096:]
    startxref = _STARTXREF.search(tail)
    trailer_at = base.rfind(b"trailer")
    if startxref is None or trailer_at < 0:
        return base + f"% dokobit-emulator {note}\n%%EOF\n".encode("ascii", "replace")
    trailer = base[trailer_at : trailer_at + 1024]
    size, root = _SIZE.search(trailer), _ROOT.search(trailer)
    if size is None or root is None:
        return base + f"% dokobit-emulator {note}\n%%EOF\n".encode("ascii", "replace")
    number = int(size.group(1))
    obj_at = len(base)
    update = bytearray(
        b"%d 0 obj\n<< /Producer (dokobit-async emulator) /Subject (%s) >>\nendobj\n"
        % (number, _pdf_text(note).encode("ascii"))
    )
    xref_at = obj_at + len(update)
    update += b"xref\n%d 1\n%010d 00000 n \n" % (number, obj_at)
    update += b"trailer\n<< /Size %d /Root %s /Info %d 0 R /Prev %d >>\n" % (
        number + 1,
        root.group(1),
        number,
        int(startxref.group(1)),
    )
    update += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return base + bytes(update)


def _existing_container(files: list[tuple[str, bytes]]) -> zipfile.ZipFile | None:
    if len(files) != 1 or files[0][1][:2] != b"PK":
        return None
    try:
        archive = zipfile.ZipFile(io.BytesIO(files[0][1]))
        archive.getinfo("mimetype")
    except (zipfile.BadZipFile, KeyError, ValueError):
        return None
    return archive


def _manifest(names: list[str], mimetype: str) -> str:
    entries = "".join(
        f'<manifest:file-entry manifest:full-path="{escape(n)}" '
        f'manifest:media-type="{escape(mime_type_of(n))}"/>'
        for n in names
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        f"{entries}</manifest:manifest>"
    )


def _signature_xml(mark: Mark, files: list[tuple[str, bytes]]) -> str:
    refs = "".join(
        f'<Reference URI="{escape(n)}"><DigestValue>{hashlib.sha256(b).hexdigest()}'
        "</DigestValue></Reference>"
        for n, b in files
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<EmulatedSignature kind="{escape(mark.kind)}" signer="{escape(mark.who)}" '
        f'time="{mark.time.isoformat()}">{refs}</EmulatedSignature>'
    )


def build_container(type_: str, files: list[tuple[str, bytes]], marks: list[Mark]) -> bytes:
    """A zip-based container of ``type_`` with ``files`` and one signature entry per mark.

    A single uploaded file that already is a container is extended, not wrapped.
    """
    mimetype = CONTAINER_MIMETYPES.get(type_, CONTAINER_MIMETYPES["asice"])
    out = io.BytesIO()
    existing = _existing_container(files)
    with zipfile.ZipFile(out, "w") as archive:

        def put(name: str, data: bytes, method: int = zipfile.ZIP_DEFLATED) -> None:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = method
            archive.writestr(info, data)

        data_files = files
        if existing is not None:
            put("mimetype", existing.read("mimetype"), zipfile.ZIP_STORED)
            for info in existing.infolist():
                if info.filename != "mimetype":
                    put(info.filename, existing.read(info))
            first = len([n for n in existing.namelist() if n.startswith("META-INF/signatures")])
        else:
            put("mimetype", mimetype.encode("ascii"), zipfile.ZIP_STORED)
            for name, data in files:
                put(name, data)
            put("META-INF/manifest.xml", _manifest([n for n, _ in files], mimetype).encode())
            first = 0
        for number, mark in enumerate(marks, start=first):
            put(f"META-INF/signatures{number}.xml", _signature_xml(mark, data_files).encode())
    return out.getvalue()


def validation_report(kind: str, name: str, data: bytes) -> tuple[bytes, str]:
    """The body and content type of a validation report download of ``kind``."""
    digest = hashlib.sha256(data).hexdigest()
    if kind.endswith("-pdf"):
        title = (
            "Detailed validation report" if kind.startswith("detailed") else "Validation report"
        )
        lines = [title, f"File: {name}", f"SHA-256: {digest}", "Result: emulated, not validated"]
        return make_pdf(lines), "application/pdf"
    root = "DiagnosticData" if kind.startswith("diagnostic") else "ValidationReport"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<{root} emulated="true"><Document name="{escape(name)}" sha256="{digest}" '
        f'size="{len(data)}"/></{root}>'
    )
    return xml.encode("utf-8"), "application/xml"
