/* chi_square.h — the χ² goodness-of-fit check the sampling tests share (speculative decoding, grammar): observed
 * counts against expected probabilities, and the critical value their verdicts use. */
#ifndef TANDEM_TEST_CHI_SQUARE_H
#define TANDEM_TEST_CHI_SQUARE_H

#include <math.h>

/* χ² of observed counts against expected probabilities (bins with expectation < 5 are pooled). */
static double chi_square(const int *counts, const double *expected_p, int n_bins, int total, int *dof) {
    double chi = 0, pool_obs = 0, pool_exp = 0;
    int bins = 0;
    for (int i = 0; i < n_bins; i++) {
        double e = expected_p[i] * total;
        if (e < 5) {
            pool_obs += counts[i];
            pool_exp += e;
            continue;
        }
        chi += (counts[i] - e) * (counts[i] - e) / e;
        bins++;
    }
    if (pool_exp > 0) {
        chi += (pool_obs - pool_exp) * (pool_obs - pool_exp) / fmax(pool_exp, 1e-9);
        bins++;
    }
    *dof = bins - 1;
    return chi;
}

/* upper 0.1% point of χ²(dof), Wilson–Hilferty approximation */
static double chi_critical(int dof) {
    const double z = 3.09, k = dof;
    double t = 1 - 2 / (9 * k) + z * sqrt(2 / (9 * k));
    return k * t * t * t;
}

#endif
