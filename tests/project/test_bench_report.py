"""bench.report.targets: the first GPU run's target verdicts, read from a result's rows (synthetic
rows here, so each verdict's rule is checked without a GPU)."""

from __future__ import annotations

from bench import report

COPY = 3000.0  # GB/s


def row(op, numel, pass_, ours_ms, eager_ms=None, compiled_ms=None, dtype="float32", pct=None):
    nbytes = 6 * numel * 4
    ours_ms = ours_ms if pct is None else nbytes / (pct / 100 * COPY * 1e9) * 1e3
    return {
        "op": op,
        "dtype": dtype,
        "numel": numel,
        "pass": pass_,
        "ours_ms": ours_ms,
        "eager_ms": eager_ms or 2 * ours_ms,
        "compiled_ms": compiled_ms or ours_ms,
        "bytes": nbytes,
        "ours_gbps": nbytes / (ours_ms * 1e-3) / 1e9,
    }


def verdicts(rows, e2e=()):
    result = {"rows": rows, "copy_gbps": COPY, "e2e": list(e2e)}
    return {t: (ok, why) for t, ok, why in report.targets(result)}


def test_bandwidth_target_uses_the_median_and_the_lowest_row_at_16m_and_up():
    rows = [
        row("add", 2**24, "fwd", 0, pct=95),
        row("add", 2**26, "fwd", 0, pct=92),
        row("add", 2**26, "fwd+bwd", 0, pct=80),
        row("add", 2**20, "fwd", 0, pct=10),
    ]
    ok, why = verdicts(rows)["add: >= 90% of copy (median), no row < 75%, >= 16M"]
    assert ok and "median 92%" in why and "lowest 80%" in why and "3 rows" in why
    rows.append(row("add", 2**28, "fwd", 0, pct=74))
    ok, why = verdicts(rows)["add: >= 90% of copy (median), no row < 75%, >= 16M"]
    assert ok is False and "lowest 74%" in why


def test_ste_has_no_bandwidth_target_and_missing_rows_are_not_measured():
    v = verdicts([row("ste", 2**24, "fwd", 0.01), row("gate", 2**20, "fwd", 0.1)])
    assert not any(t.startswith("ste: >= 90%") for t in v)
    assert v["gate: >= 90% of copy (median), no row < 75%, >= 16M"] == (None, "no rows")
    assert v["gate: eager at 256K not slower than the eager formulas"] == (None, "no rows")


def test_speed_up_and_compile_parity_rules():
    rows = [
        row("multiply", 2**20, "fwd+bwd", 1.0, eager_ms=1.6, compiled_ms=0.96),
        row("multiply", 2**22, "fwd+bwd", 1.0, eager_ms=1.4, compiled_ms=1.2),
        row("multiply", 2**18, "fwd", 1.0, eager_ms=0.99),
    ]
    v = verdicts(rows)
    ok, why = v["multiply: fwd+bwd >= 1.5x eager formulas, >= 1M"]
    assert ok is False and "1.40x" in why and "4,194,304" in why
    ok, why = v["multiply: never > 5% slower than torch.compile of the formulas"]
    assert ok is True and "0.96x" in why  # 4% slower is within the 5%
    assert v["multiply: eager at 256K not slower than the eager formulas"][0] is False


def test_end_to_end_target_per_model_and_size():
    e2e = [
        {"model": "cnn", "size": "big", "ours_compiled_ms": 2.0, "compiled_ms": 2.1},
        {"model": "transformer", "size": "big", "ours_compiled_ms": 2.2, "compiled_ms": 2.1},
        {"model": "cnn", "size": "small", "ours_compiled_ms": None, "compiled_ms": None},
    ]
    v = verdicts([], e2e)
    assert v["e2e cnn big: compiled step <= compiled formulas"][0] is True
    assert v["e2e transformer big: compiled step <= compiled formulas"][0] is False
    assert not any("small" in t for t in v)


def test_ncu_csv_is_tabulated_from_the_second_call(tmp_path):
    """bench.ncu_cases.parse on a CSV in ncu's --csv layout (one row per launch and metric, with
    ==PROF== lines mixed in): the later half of the launches, summed per case, against the
    floor; a case with no file or an odd launch count says so instead of guessing."""
    from bench import ncu_cases

    header = (
        '"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream",'
        '"Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit",'
        '"Metric Value"\n'
    )

    def rows(launch, name, ns, read, write):
        common = (
            f'"{launch}","1","python3","h","{name}","1","7","(128, 1, 1)","(9, 1, 1)","0","9.0",'
        )
        return "".join(
            f'{common}"Command line profiler metrics","{m}","{u}","{v:,}"\n'
            for m, u, v in (
                ("dram__bytes_read.sum", "byte", read),
                ("dram__bytes_write.sum", "byte", write),
                ("gpu__time_duration.sum", "nsecond", ns),
            )
        )

    floor = 6 * ncu_cases.NUMEL * 4  # add fwd+bwd: 6 tensors
    text = (
        "==PROF== Connected to process 1\n"
        + header
        + rows(0, "fwd_kernel", 999, 1, 1)
        + rows(1, "bwd_kernel", 999, 1, 1)
        + rows(2, "fwd_kernel", 100_000, floor // 2, floor // 4)
        + rows(3, "bwd_kernel", 100_000, floor // 4, 0)
        + "==PROF== Disconnected\n"
    )
    (tmp_path / ncu_cases.file_name("add fwd+bwd")).write_text(text)
    (tmp_path / ncu_cases.file_name("gate fwd")).write_text(header + rows(0, "fwd_kernel", 1, 1, 1))
    table = ncu_cases.parse(str(tmp_path))
    line = next(x for x in table.splitlines() if x.startswith("| add fwd+bwd |"))
    assert "fwd_kernel + bwd_kernel | 200.0 |" in line and "| 1.000 |" in line
    assert "1 launches in gate_fwd.csv" in table and "0 launches in add_fwd.csv" in table


def test_ncu_filters_for_every_kernel_the_package_launches():
    """The regex gpu_check.sh gives ncu names each of the package's Triton kernels (a kernel
    renamed, as fwd_kernel once was from _fwd_kernel, would otherwise drop out of the profile)."""
    import re

    import kernels.lerp.triton
    import kernels.multiply.triton
    from bench import ncu_cases

    names = ncu_cases.kernel_names()
    assert names == ["_finish_kernel", "bwd_kernel", "fwd_kernel"]
    launched = [
        kernels.lerp.triton.fwd_kernel,
        kernels.lerp.triton.bwd_kernel,
        kernels.multiply.triton.fwd_kernel,
        kernels.multiply.triton.bwd_kernel,
    ]
    regex = re.compile(ncu_cases.kernel_regex())
    for kernel in launched:
        assert regex.search(kernel.fn.__name__), kernel
    assert regex.search("_finish_kernel")
    assert not regex.search("triton_poi_fused_lerp_0") and not regex.search("elementwise_kernel")
