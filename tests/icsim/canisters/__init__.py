"""Python models of the canister kinds prep uploads into."""
