"""`prep whoami`: the principal that signs calls with the given identity options."""

from __future__ import annotations

from pipeline.cli.ic_options import AnonymousOption, IdentityOption, PemOption, choose_identity
from pipeline.cli.output import JsonFlag, Output


def whoami_command(
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    json_output: JsonFlag = False,
) -> None:
    """Print the principal of an identity (--pem, --identity, --anonymous, $PREP_PEM or dfx's default)."""
    who = choose_identity(pem, identity, anonymous)
    data = {"principal": who.principal, "key_type": who.key_type, "source": who.source}
    out = Output(json=json_output)
    out.info(f"identity: {who.source} ({who.key_type})")
    out.result(data, who.principal)
