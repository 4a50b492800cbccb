"""The open enums of the models: known values as ``str`` members, unknown ones kept.

Part of :mod:`dokobit_async.models`, which re-exports the public names.
"""

from __future__ import annotations

import enum

__all__ = [
    "AnnotationPosition",
    "DocumentStatus",
    "OpenEnum",
    "ReportKind",
    "Role",
    "SignerStatus",
    "SigningMethod",
    "SigningType",
]


class OpenEnum(str, enum.Enum):
    """A ``str`` enum whose fields also accept values it does not know (the model
    fields typed with one are ``Enum | str``)."""

    def __str__(self) -> str:
        """The value, as the API spells it."""
        return str(self.value)


class SigningType(OpenEnum):
    """Document or container type of a signing (``type``)."""

    PDF = "pdf"
    ASICE = "asice"
    BDOC = "bdoc"
    EDOC = "edoc"
    ADOC = "adoc"
    ADOC_CEDOC = "adoc.cedoc"


class Role(OpenEnum):
    """A participant's role; viewers never sign and never block completion."""

    SIGNER = "signer"
    VIEWER = "viewer"


class AnnotationPosition(OpenEnum):
    """Where the signature annotation goes on a PDF (``annotation_position``)."""

    FIRST_TOP = "first_top"
    FIRST_BOTTOM = "first_bottom"
    LAST_TOP = "last_top"
    LAST_BOTTOM = "last_bottom"
    NONE = "none"


class SigningMethod(OpenEnum):
    """Values of ``allowed_signing_methods``."""

    MOBILE = "mobile"
    SMARTID = "smartid"
    SMARTCARD = "smartcard"
    EPARAKSTS_MOBILE = "eparaksts_mobile"
    BANKID_NO = "bankid_no"
    BANKID_SE = "bankid_se"
    AUDKENNI_APP = "audkenni_app"
    FTN = "ftn"
    MITID = "mitid"
    ELECTRONIC_ID = "electronic_id"
    ITSME = "itsme"
    IDIN = "idin"
    SWISSCOM = "swisscom"
    SMS_OTP = "sms_otp"


class DocumentStatus(OpenEnum):
    """A signing's status as the status endpoint reports it (open: more may come)."""

    PENDING = "pending"
    COMPLETED = "completed"
    ARCHIVED = "archived"
    FAILED = "failed"


class SignerStatus(OpenEnum):
    """A participant's status in a status response (open: more may come)."""

    PENDING = "pending"
    SIGNED = "signed"
    DECLINED = "declined"
    FAILED = "failed"


class ReportKind(OpenEnum):
    """The four validation reports."""

    REPORT_PDF = "report-pdf"
    DETAILED_REPORT_PDF = "detailed-report-pdf"
    REPORT_XML = "report-xml"
    DIAGNOSTIC_DATA_XML = "diagnostic-data-xml"
