// Known-answer tests of single components (V4-ARCH §7 step 1 and 3): Hadamard orthonormality,
// Sinkhorn column sums, the YaRN frequency table, and which window/compressed entries exist and
// are selected at the boundary lengths 3, 4, 5, 127, 128, 129 and 4*index_topk +- 1.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "model/forward.h"
#include "model/mhc.h"
#include "model/rope.h"
#include "test_util.h"
#include "tiny_fixture.h"

using namespace dsv4;

TEST(Components, HadamardIsOrthonormalSylvester) {
  constexpr int n = 128;
  std::vector<double> H(n * n);  // H[i][j] = (H e_j)[i]
  for (int j = 0; j < n; ++j) {
    std::vector<float> e(n, 0.f);
    e[size_t(j)] = 1.f;
    kernels::hadamard_orthonormal(e.data(), n);
    for (int i = 0; i < n; ++i) H[size_t(i * n + j)] = e[size_t(i)];
  }
  const double inv = 1.0 / std::sqrt(double(n));
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      // Sylvester (natural) order: sign (-1)^popcount(i & j).
      const double want = (__builtin_popcount(unsigned(i & j)) & 1) ? -inv : inv;
      ASSERT_NEAR(H[size_t(i * n + j)], want, 1e-7) << i << "," << j;
    }
  double worst = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int k = 0; k < n; ++k) s += H[size_t(i * n + k)] * H[size_t(j * n + k)];
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 1e-6) << "H H^T != I";
}

// SinkhornSplit in the exact spec order (row softmax + eps, column normalisation, then 19 x
// (row, column)), in double, as the known answer.
static void sinkhorn_reference(double* C, int hc, int iters, double eps) {
  for (int j = 0; j < hc; ++j) {
    double m = C[j * hc], s = 0;
    for (int k = 1; k < hc; ++k) m = std::max(m, C[j * hc + k]);
    for (int k = 0; k < hc; ++k) s += (C[j * hc + k] = std::exp(C[j * hc + k] - m));
    for (int k = 0; k < hc; ++k) C[j * hc + k] = C[j * hc + k] / s + eps;
  }
  auto col = [&] {
    for (int k = 0; k < hc; ++k) {
      double s = 0;
      for (int j = 0; j < hc; ++j) s += C[j * hc + k];
      for (int j = 0; j < hc; ++j) C[j * hc + k] /= s + eps;
    }
  };
  auto row = [&] {
    for (int j = 0; j < hc; ++j) {
      double s = 0;
      for (int k = 0; k < hc; ++k) s += C[j * hc + k];
      for (int k = 0; k < hc; ++k) C[j * hc + k] /= s + eps;
    }
  };
  col();
  for (int it = 1; it < iters; ++it) {
    row();
    col();
  }
}

TEST(Components, SinkhornColumnsSumToOne) {
  uint64_t s = 12345;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return double((s >> 11) * 0x1.0p-53) * 2 - 1;  // [-1, 1)
  };
  for (double spread : {0.1, 1.0, 4.0, 20.0}) {
    for (int trial = 0; trial < 50; ++trial) {
      float C[16];
      double R[16];
      for (int i = 0; i < 16; ++i) R[i] = C[i] = float(spread * next());
      kernels::sinkhorn_split(C, 4, 20, 1e-6f);
      sinkhorn_reference(R, 4, 20, 1e-6);
      for (int k = 0; k < 4; ++k) {
        double col = 0, row = 0;
        for (int j = 0; j < 4; ++j) {
          col += C[j * 4 + k];
          row += C[k * 4 + j];
          ASSERT_GT(C[j * 4 + k], 0.f);
          ASSERT_NEAR(C[j * 4 + k], R[j * 4 + k], 2e-6) << "spread " << spread;
        }
        ASSERT_NEAR(col, 1.0, 1e-5) << "column " << k << ", spread " << spread;
        // Rows are only approximately normalised (the last step is a column normalisation).
        ASSERT_NEAR(row, 1.0, spread > 10 ? 0.5 : 1e-2) << "row " << k << ", spread " << spread;
      }
    }
  }
}

// V4-ARCH §2.3.1 / §7: theta 160000, factor 16, original 65536, beta 32/1 -> low 15, high 25;
// i <= 15 unchanged, i = 16 -> x0.90625, i = 24 -> x0.15625, i >= 25 -> x1/16.
TEST(Components, YarnFrequencyTable) {
  const auto base = model::rope_frequencies(64, 160000.f, 16.f, 65536, 32.f, 1.f, /*yarn=*/false);
  const auto yarn = model::rope_frequencies(64, 160000.f, 16.f, 65536, 32.f, 1.f, /*yarn=*/true);
  ASSERT_EQ(base.size(), 32u);
  ASSERT_EQ(yarn.size(), 32u);
  for (int i = 0; i < 32; ++i) {
    const double w = std::pow(160000.0, -2.0 * i / 64.0);
    EXPECT_NEAR(base[size_t(i)] / w, 1.0, 1e-6) << i;
    double ratio = 1.0;
    if (i >= 25) ratio = 1.0 / 16;
    else if (i > 15) {
      const double ramp = (i - 15) / 10.0;
      ratio = (1 - ramp) + ramp / 16;
    }
    EXPECT_NEAR(yarn[size_t(i)] / base[size_t(i)], ratio, 1e-6) << i;
  }
  EXPECT_NEAR(yarn[16] / base[16], 0.90625, 1e-6);
  EXPECT_NEAR(yarn[24] / base[24], 0.15625, 1e-6);
  // Ratio-0 layers: theta 10000, no YaRN.
  const auto swa = model::rope_frequencies(64, 10000.f, 1.f, 0, 0.f, 0.f, false);
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(swa[size_t(i)] / std::pow(10000.0, -2.0 * i / 64.0), 1.0, 1e-6);
  // The per-layer tables the forward pass uses.
  model::Config c = model::preset_config("tiny");
  const model::RopeTable comp(c, true), plain(c, false);
  for (int i = 0; i < 32; ++i) {
    EXPECT_FLOAT_EQ(comp.omega()[size_t(i)], yarn[size_t(i)]);
    EXPECT_FLOAT_EQ(plain.omega()[size_t(i)], swa[size_t(i)]);
  }
}

// After a prefill of L tokens: floor(L/4) entries and index keys per CSA layer, floor(L/128) per
// HCA layer, none in SWA layers; query t selects exactly min(topk, (t+1) div 4) distinct
// eligible CSA entries (w < (t+1) div 4), in ascending order.
TEST(Components, WindowAndEntryVisibility) {
  auto m = model::Model::load(test::tiny_checkpoint_dir());
  const model::Config& c = m->config();
  const int topk = c.index_topk;
  ASSERT_GE(c.count_layers(model::AttnKind::csa), 1);
  ASSERT_GE(c.count_layers(model::AttnKind::hca), 1);
  for (auto num : {model::Numerics::f32, model::Numerics::reference}) {
    model::ForwardPass fp(*m, num);
    for (int L : {1, 3, 4, 5, 127, 128, 129, 4 * topk - 1, 4 * topk, 4 * topk + 1, 255, 256, 257}) {
      SCOPED_TRACE("L = " + std::to_string(L) + ", " + model::numerics_name(num));
      std::vector<int32_t> ids(static_cast<size_t>(L));
      for (int i = 0; i < L; ++i) ids[size_t(i)] = (i * 7919 + 13) % 120000;
      auto st = fp.new_state();
      std::vector<std::vector<int32_t>> sel;
      fp.debug_csa_selected = &sel;
      model::SeqChunk ch{st.get(), ids, false};
      std::vector<float> logits;
      fp.forward(std::span<model::SeqChunk>(&ch, 1), logits);
      fp.debug_csa_selected = nullptr;
      ASSERT_EQ(st->n_past(), L);
      for (int l = 0; l < c.n_layers; ++l) {
        const auto& ls = st->layer(l);
        switch (c.attn_kind(l)) {
          case model::AttnKind::swa:
            EXPECT_EQ(ls.kv_compressed.size(), 0) << "layer " << l;
            break;
          case model::AttnKind::csa:
            EXPECT_EQ(ls.kv_compressed.size(), L / 4) << "layer " << l;
            EXPECT_EQ(ls.index_keys.size(), L / 4) << "layer " << l;
            break;
          case model::AttnKind::hca:
            EXPECT_EQ(ls.kv_compressed.size(), L / 128) << "layer " << l;
            break;
        }
      }
      ASSERT_EQ(int(sel.size()), c.count_layers(model::AttnKind::csa));
      for (const auto& layer_sel : sel) {
        ASSERT_EQ(layer_sel.size(), size_t(L) * size_t(topk));
        for (int t = 0; t < L; ++t) {
          const int eligible = (t + 1) / 4;
          const int32_t* row = &layer_sel[size_t(t) * size_t(topk)];
          int n = 0, prev = -1;
          for (int k = 0; k < topk; ++k) {
            if (row[k] < 0) continue;
            ++n;
            ASSERT_LT(row[k], eligible) << "t=" << t << ": entry not yet complete was selected";
            ASSERT_GT(row[k], prev) << "t=" << t << ": selection not ascending/unique";
            prev = row[k];
          }
          ASSERT_EQ(n, std::min(topk, eligible)) << "t=" << t;
        }
      }
    }
  }
}
