"""Teaches schemathesis the OpenAPI document's own string formats."""

import schemathesis
from hypothesis import strategies as st

# `secp256k1-public-key`: 130 hexadecimal characters that are also a point of the curve (a
# pattern cannot say the second part). These are real keys.
schemathesis.openapi.format(
    "secp256k1-public-key",
    st.sampled_from(
        [
            "04b54ca998f630a23051e090e51689ea7d469b4309ca184075f711791cdd2cf9cf51673138e57956b326dda96d013d48d22d0f7e64c2cae816ae3938dc6c20950d",
            "04f8975d2bce30badc8f6434ea16bf63959dcf64070da1e27204577e093d64ccc9fa9bf70a9cb4e52cf1aad920888908554bd434237c20c3082223f0fcfc040f97",
            "04f0deb6656615ce1bf73d3a11d49a610ef1ce1b06194811ef23965846186ba7af8ef769aae676d47bd43bfa238ea52466c75b46d8c0d34c982d0535187832b0ef",
        ]
    ),
)
