"""The ESPnet relative-position pieces of the flow encoder, checked against their definitions."""
import math

import torch

from stream_omni_ros.vocoder.conformer import relative_position_table, select_relative_scores


def test_position_table_rows_are_offsets_from_t_minus_1_down_to_minus_t_plus_1() -> None:
    T, D = 5, 8
    table = relative_position_table(T, D, torch.device("cpu"), torch.float32)
    assert table.shape == (1, 2 * T - 1, D)
    for row, offset in enumerate(range(T - 1, -T, -1)):
        for i in range(D // 2):
            angle = offset * math.exp(-2 * i * math.log(10000.0) / D)
            assert math.isclose(table[0, row, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
            assert math.isclose(table[0, row, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)


def test_relative_scores_pair_query_i_key_j_with_offset_i_minus_j() -> None:
    B, H, T = 2, 3, 6
    bd = torch.randn(B, H, T, 2 * T - 1)
    picked = select_relative_scores(bd)
    assert picked.shape == (B, H, T, T)
    for i in range(T):
        for j in range(T):
            column = (T - 1) - (i - j)  # the table row holding offset i - j
            assert torch.equal(picked[:, :, i, j], bd[:, :, i, column])
