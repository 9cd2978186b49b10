/*
 * rfe_einsum.c - fixed-point Einsum-network kernels; see rfe_einsum.h and the arithmetic spec in
 * host/rfedge/einsum_fixed.py (the bit-exact Python reference these must match).
 *
 * Written for rv32imc: int32 only, the products that need 64 bits are taken as their high word
 * ((uint64_t)a * b >> 32), which gcc turns into one mulhu instruction on rv32im.
 */
#include "rfe_einsum.h"

/* EXPT[f] = round(2^31 * 2^(-f/256)), f = 0..255 */
static const uint32_t EXPT[256] = {
    2147483648u, 2141676973u, 2135885998u, 2130110682u, 2124350982u, 2118606857u,
    2112878262u, 2107165158u, 2101467502u, 2095785251u, 2090118366u, 2084466803u,
    2078830522u, 2073209480u, 2067603638u, 2062012954u, 2056437387u, 2050876895u,
    2045331439u, 2039800978u, 2034285470u, 2028784876u, 2023299156u, 2017828268u,
    2012372174u, 2006930832u, 2001504204u, 1996092249u, 1990694927u, 1985312200u,
    1979944027u, 1974590370u, 1969251188u, 1963926443u, 1958616096u, 1953320108u,
    1948038440u, 1942771053u, 1937517909u, 1932278970u, 1927054196u, 1921843549u,
    1916646992u, 1911464486u, 1906295993u, 1901141476u, 1896000896u, 1890874216u,
    1885761398u, 1880662405u, 1875577199u, 1870505744u, 1865448001u, 1860403934u,
    1855373507u, 1850356681u, 1845353420u, 1840363688u, 1835387448u, 1830424663u,
    1825475297u, 1820539314u, 1815616678u, 1810707353u, 1805811301u, 1800928489u,
    1796058879u, 1791202437u, 1786359126u, 1781528911u, 1776711757u, 1771907628u,
    1767116489u, 1762338305u, 1757573041u, 1752820662u, 1748081133u, 1743354420u,
    1738640488u, 1733939301u, 1729250827u, 1724575029u, 1719911875u, 1715261330u,
    1710623359u, 1705997930u, 1701385007u, 1696784557u, 1692196547u, 1687620943u,
    1683057710u, 1678506817u, 1673968228u, 1669441912u, 1664927835u, 1660425963u,
    1655936265u, 1651458706u, 1646993254u, 1642539877u, 1638098541u, 1633669214u,
    1629251865u, 1624846459u, 1620452965u, 1616071351u, 1611701585u, 1607343634u,
    1602997467u, 1598663052u, 1594340357u, 1590029350u, 1585730000u, 1581442275u,
    1577166143u, 1572901575u, 1568648537u, 1564406999u, 1560176931u, 1555958300u,
    1551751076u, 1547555228u, 1543370725u, 1539197537u, 1535035634u, 1530884983u,
    1526745556u, 1522617322u, 1518500250u, 1514394310u, 1510299473u, 1506215708u,
    1502142985u, 1498081275u, 1494030547u, 1489990772u, 1485961921u, 1481943963u,
    1477936870u, 1473940611u, 1469955159u, 1465980482u, 1462016553u, 1458063343u,
    1454120821u, 1450188960u, 1446267730u, 1442357104u, 1438457051u, 1434567544u,
    1430688553u, 1426820052u, 1422962010u, 1419114401u, 1415277195u, 1411450365u,
    1407633882u, 1403827719u, 1400031848u, 1396246240u, 1392470869u, 1388705706u,
    1384950723u, 1381205894u, 1377471191u, 1373746586u, 1370032052u, 1366327563u,
    1362633090u, 1358948606u, 1355274085u, 1351609500u, 1347954824u, 1344310030u,
    1340675091u, 1337049980u, 1333434672u, 1329829140u, 1326233356u, 1322647296u,
    1319070932u, 1315504238u, 1311947188u, 1308399756u, 1304861917u, 1301333643u,
    1297814910u, 1294305692u, 1290805962u, 1287315695u, 1283834865u, 1280363448u,
    1276901417u, 1273448747u, 1270005413u, 1266571390u, 1263146652u, 1259731174u,
    1256324931u, 1252927899u, 1249540052u, 1246161366u, 1242791816u, 1239431376u,
    1236080024u, 1232737732u, 1229404479u, 1226080238u, 1222764986u, 1219458698u,
    1216161350u, 1212872918u, 1209593378u, 1206322705u, 1203060876u, 1199807867u,
    1196563654u, 1193328213u, 1190101520u, 1186883552u, 1183674286u, 1180473697u,
    1177281762u, 1174098458u, 1170923762u, 1167757650u, 1164600099u, 1161451085u,
    1158310587u, 1155178580u, 1152055042u, 1148939949u, 1145833280u, 1142735011u,
    1139645120u, 1136563583u, 1133490379u, 1130425485u, 1127368878u, 1124320536u,
    1121280436u, 1118248556u, 1115224875u, 1112209370u, 1109202018u, 1106202798u,
    1103211687u, 1100228665u, 1097253708u, 1094286796u, 1091327906u, 1088377016u,
    1085434106u, 1082499153u, 1079572136u, 1076653033u,
};

/* LOGT[i] = round(2^16 * log2(1 + i/256)), i = 0..256 */
static const int32_t LOGT[257] = {
    0, 369, 736, 1102, 1466, 1829, 2190, 2551, 2909, 3267,
    3623, 3978, 4331, 4683, 5034, 5384, 5732, 6079, 6425, 6769,
    7112, 7454, 7795, 8134, 8473, 8810, 9146, 9480, 9814, 10146,
    10477, 10807, 11136, 11464, 11791, 12116, 12440, 12764, 13086, 13407,
    13727, 14046, 14363, 14680, 14996, 15310, 15624, 15937, 16248, 16559,
    16868, 17177, 17484, 17791, 18096, 18401, 18704, 19007, 19308, 19609,
    19909, 20207, 20505, 20802, 21098, 21393, 21687, 21980, 22272, 22564,
    22854, 23144, 23433, 23720, 24007, 24293, 24579, 24863, 25146, 25429,
    25711, 25992, 26272, 26551, 26830, 27108, 27384, 27660, 27936, 28210,
    28484, 28757, 29029, 29300, 29571, 29840, 30109, 30378, 30645, 30912,
    31178, 31443, 31707, 31971, 32234, 32496, 32758, 33019, 33279, 33538,
    33797, 34055, 34312, 34569, 34825, 35080, 35334, 35588, 35841, 36094,
    36346, 36597, 36847, 37097, 37346, 37595, 37842, 38090, 38336, 38582,
    38827, 39072, 39316, 39559, 39802, 40044, 40286, 40527, 40767, 41006,
    41246, 41484, 41722, 41959, 42196, 42432, 42667, 42902, 43137, 43370,
    43603, 43836, 44068, 44300, 44530, 44761, 44990, 45220, 45448, 45676,
    45904, 46131, 46357, 46583, 46809, 47034, 47258, 47482, 47705, 47928,
    48150, 48372, 48593, 48813, 49034, 49253, 49472, 49691, 49909, 50127,
    50344, 50560, 50776, 50992, 51207, 51422, 51636, 51850, 52063, 52276,
    52488, 52700, 52911, 53122, 53332, 53542, 53751, 53960, 54169, 54377,
    54584, 54791, 54998, 55204, 55410, 55615, 55820, 56025, 56229, 56432,
    56635, 56838, 57040, 57242, 57443, 57644, 57845, 58045, 58245, 58444,
    58643, 58841, 59039, 59237, 59434, 59631, 59827, 60023, 60219, 60414,
    60609, 60803, 60997, 61190, 61384, 61576, 61769, 61961, 62152, 62343,
    62534, 62725, 62915, 63104, 63294, 63483, 63671, 63859, 64047, 64234,
    64421, 64608, 64794, 64980, 65166, 65351, 65536,
};

static inline uint32_t mulhu(uint32_t a, uint32_t b)
{
    return (uint32_t)(((uint64_t)a * b) >> 32);
}

static inline uint32_t exp2q(int32_t d)
{
    uint32_t k = (uint32_t)d >> RFE_EINSUM_LU_BITS;
    if (k >= 32u) return 0u;
    return EXPT[d & 255] >> k;
}

uint32_t rfe_einsum_exp2q(int32_t d) { return exp2q(d); }

static inline int32_t log2q(uint32_t s)
{
    int32_t n = 31;
    uint32_t idx, frac;
    int32_t lo, v;
    if (s == 0u) s = 1u;
    /* normalize so bit 31 is set (rv32imc has no clz): binary search, 5 steps */
    if (!(s >> 16)) { s <<= 16; n -= 16; }
    if (!(s >> 24)) { s <<= 8; n -= 8; }
    if (!(s >> 28)) { s <<= 4; n -= 4; }
    if (!(s >> 30)) { s <<= 2; n -= 2; }
    if (!(s >> 31)) { s <<= 1; n -= 1; }
    idx = (s >> 23) & 255u;
    frac = (s >> 7) & 0xFFFFu;
    lo = LOGT[idx];
    v = lo + (int32_t)(((uint32_t)(LOGT[idx + 1] - lo) * frac) >> 16);
    return (n << RFE_EINSUM_LU_BITS) + ((v + 128) >> 8);
}

int32_t rfe_einsum_log2q(uint32_t s) { return log2q(s); }

int32_t rfe_einsum_lse(const int32_t *v, int32_t n, int32_t rsh)
{
    int32_t i, m = v[0];
    uint32_t s = 0;
    for (i = 1; i < n; i++)
        if (v[i] > m) m = v[i];
    for (i = 0; i < n; i++)
        s += exp2q(m - v[i]) >> rsh;
    return m + log2q(s) - ((31 - rsh) << RFE_EINSUM_LU_BITS);
}

static int32_t ceil_log2(int32_t n)
{
    int32_t r = 0;
    while ((1L << r) < n) r++;
    return r;
}

int32_t rfe_einsum_scratch_words(const rfe_einsum_model_t *m)
{
    int32_t I = m->L > m->K ? m->L : m->K;
    return m->F * m->L + (1L << m->D) * m->L + m->R * m->C + 2 * I + m->C;
}

void rfe_einsum_leaf(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *lf)
{
    const int32_t L = m->L, qmax = m->qmax;
    const int16_t *muq = m->muq;
    const uint16_t *g = m->g;
    const uint8_t *sh = m->sh;
    const int32_t *c = m->c;
    int32_t f, k;
    for (f = 0; f < m->F; f++) {
        const int32_t x = xq[f];
        for (k = 0; k < L; k++) {
            int32_t d = x - *muq++;
            uint32_t ad = (uint32_t)(d < 0 ? -d : d);
            uint32_t s = *sh++;
            uint32_t e = (ad * *g++ + ((1u << s) >> 1)) >> s;
            int32_t q = qmax;
            if (e <= RFE_EINSUM_E_MAX) {
                uint32_t q2 = (e * e) >> 8;
                if (q2 < (uint32_t)qmax) q = (int32_t)q2;
            }
            *lf++ = *c++ - q;
        }
    }
}

static void regions_any(const int32_t *lf, int32_t L, const uint16_t *perm_r, const uint16_t *bounds,
                        int32_t nreg, int32_t *out)
{
    int32_t j, p, k;
    for (j = 0; j < nreg; j++, out += L) {
        const int32_t *row = lf + (int32_t)perm_r[bounds[j]] * L;
        for (k = 0; k < L; k++) out[k] = row[k];
        for (p = bounds[j] + 1; p < bounds[j + 1]; p++) {
            row = lf + (int32_t)perm_r[p] * L;
            for (k = 0; k < L; k++) out[k] += row[k];
        }
    }
}

/* compile-time L: the L sums of a region stay in registers (a term is a load and an add) */
#define RFE_EINSUM_REGIONS_N(N)                                                                      \
    static void regions_##N(const int32_t *lf, const uint16_t *perm_r, const uint16_t *bounds,      \
                            int32_t nreg, int32_t *out)                                              \
    {                                                                                                \
        int32_t j, p, k, acc[N];                                                                     \
        int32_t lo = bounds[0];                                                                      \
        for (j = 0; j < nreg; j++, out += (N)) {                                                     \
            const int32_t hi = bounds[j + 1];                                                        \
            const int32_t *row = lf + (int32_t)perm_r[lo] * (N);                                     \
            _Pragma("GCC unroll 16") for (k = 0; k < (N); k++) acc[k] = row[k];                      \
            for (p = lo + 1; p < hi; p++) {                                                          \
                row = lf + (int32_t)perm_r[p] * (N);                                                 \
                _Pragma("GCC unroll 16") for (k = 0; k < (N); k++) acc[k] += row[k];                 \
            }                                                                                        \
            _Pragma("GCC unroll 16") for (k = 0; k < (N); k++) out[k] = acc[k];                      \
            lo = hi;                                                                                 \
        }                                                                                            \
    }

RFE_EINSUM_REGIONS_N(2)
RFE_EINSUM_REGIONS_N(4)
RFE_EINSUM_REGIONS_N(8)
RFE_EINSUM_REGIONS_N(10)
RFE_EINSUM_REGIONS_N(12)
RFE_EINSUM_REGIONS_N(16)

void rfe_einsum_regions(const int32_t *lf, int32_t L, const uint16_t *perm_r, const uint16_t *bounds,
                        int32_t nreg, int32_t *out)
{
    switch (L) {
    case 2: regions_2(lf, perm_r, bounds, nreg, out); break;
    case 4: regions_4(lf, perm_r, bounds, nreg, out); break;
    case 8: regions_8(lf, perm_r, bounds, nreg, out); break;
    case 10: regions_10(lf, perm_r, bounds, nreg, out); break;
    case 12: regions_12(lf, perm_r, bounds, nreg, out); break;
    case 16: regions_16(lf, perm_r, bounds, nreg, out); break;
    default: regions_any(lf, L, perm_r, bounds, nreg, out); break;
    }
}

/* The exponentials of one node's children (Q31 relative to each child's max); returns
 * mu + mv - 29*256, the log-offset of the node's outputs. */
static inline int32_t node_exps(const int32_t *u, const int32_t *v, int32_t I, uint32_t *a, uint32_t *b)
{
    int32_t i, mu = u[0], mv = v[0];
    for (i = 1; i < I; i++) {
        if (u[i] > mu) mu = u[i];
        if (v[i] > mv) mv = v[i];
    }
    for (i = 0; i < I; i++) {
        a[i] = exp2q(mu - u[i]);
        b[i] = exp2q(mv - v[i]);
    }
    return mu + mv - (RFE_EINSUM_NODE_Q << RFE_EINSUM_LU_BITS);
}

/* Generic node: any I. */
static void layer_any(const int32_t *x, int32_t n, int32_t I, int32_t O, const uint32_t *W, uint32_t *ab,
                      int32_t *out)
{
    int32_t j, i, o, q;
    uint32_t *a = ab, *b = ab + I;
    for (j = 0; j < n; j++, x += 2 * I) {
        const int32_t base = node_exps(x, x + I, I, a, b);
        /* x of this node is consumed: out may overwrite it from here on */
        for (o = 0; o < O; o++) {
            uint32_t s = 0;
            for (i = 0; i < I; i++, W += I) {
                uint32_t t = 0;
                if (!a[i]) continue; /* exact: this row contributes mulhu(0, t) = 0 */
                for (q = 0; q < I; q++) t += mulhu(W[q], b[q]);
                s += mulhu(a[i], t);
            }
            *out++ = base + log2q(s);
        }
    }
}

/* The same for a compile-time I: the row dot product unrolls and b[] lives in registers, so a
 * term costs a load, a mulhu and an add (3 rv32 instructions). */
#define RFE_EINSUM_LAYER_N(N)                                                                        \
    static void layer_##N(const int32_t *x, int32_t n, int32_t O, const uint32_t *W, uint32_t *ab,  \
                          int32_t *out)                                                              \
    {                                                                                                \
        int32_t j, i, o, q;                                                                          \
        uint32_t *a = ab, bl[N];                                                                     \
        for (j = 0; j < n; j++, x += 2 * (N)) {                                                      \
            int32_t mu = x[0], mv = x[N], base;                                                      \
            _Pragma("GCC unroll 16") for (q = 1; q < (N); q++) {                                     \
                if (x[q] > mu) mu = x[q];                                                            \
                if (x[(N) + q] > mv) mv = x[(N) + q];                                                \
            }                                                                                        \
            _Pragma("GCC unroll 16") for (q = 0; q < (N); q++) {                                     \
                a[q] = exp2q(mu - x[q]);                                                             \
                bl[q] = exp2q(mv - x[(N) + q]);                                                      \
            }                                                                                        \
            base = mu + mv - (RFE_EINSUM_NODE_Q << RFE_EINSUM_LU_BITS);                              \
            for (o = 0; o < O; o++) {                                                                \
                uint32_t s = 0;                                                                      \
                for (i = 0; i < (N); i++, W += (N)) {                                                \
                    uint32_t t = 0;                                                                  \
                    if (!a[i]) continue;                                                             \
                    _Pragma("GCC unroll 16") for (q = 0; q < (N); q++) t += mulhu(W[q], bl[q]);      \
                    s += mulhu(a[i], t);                                                             \
                }                                                                                    \
                *out++ = base + log2q(s);                                                 \
            }                                                                                        \
        }                                                                                            \
    }

RFE_EINSUM_LAYER_N(2)
RFE_EINSUM_LAYER_N(3)
RFE_EINSUM_LAYER_N(4)
RFE_EINSUM_LAYER_N(5)
RFE_EINSUM_LAYER_N(6)
RFE_EINSUM_LAYER_N(8)
RFE_EINSUM_LAYER_N(10)
RFE_EINSUM_LAYER_N(12)
RFE_EINSUM_LAYER_N(16)

void rfe_einsum_layer(const int32_t *x, int32_t n, int32_t I, int32_t O, const uint32_t *W, uint32_t *ab,
                      int32_t *out)
{
    switch (I) {
    case 2: layer_2(x, n, O, W, ab, out); break;
    case 3: layer_3(x, n, O, W, ab, out); break;
    case 4: layer_4(x, n, O, W, ab, out); break;
    case 5: layer_5(x, n, O, W, ab, out); break;
    case 6: layer_6(x, n, O, W, ab, out); break;
    case 8: layer_8(x, n, O, W, ab, out); break;
    case 10: layer_10(x, n, O, W, ab, out); break;
    case 12: layer_12(x, n, O, W, ab, out); break;
    case 16: layer_16(x, n, O, W, ab, out); break;
    default: layer_any(x, n, I, O, W, ab, out); break;
    }
}

void rfe_einsum_mix(const int32_t *root, int32_t R, int32_t C, const int32_t *mixq, int32_t *tmp, int32_t *ll)
{
    int32_t c, r, rsh = ceil_log2(R);
    for (c = 0; c < C; c++) {
        for (r = 0; r < R; r++) tmp[r] = mixq[c * R + r] + root[r * C + c];
        ll[c] = rfe_einsum_lse(tmp, R, rsh);
    }
}

int32_t rfe_einsum_posterior(int32_t *lp, const int32_t *priorq, int32_t C)
{
    int32_t c, z, best = 0;
    for (c = 0; c < C; c++) lp[c] += priorq[c];
    z = rfe_einsum_lse(lp, C, ceil_log2(C));
    for (c = 0; c < C; c++) {
        lp[c] -= z;
        if (lp[c] > lp[best]) best = c;
    }
    return best;
}

int32_t rfe_einsum_forward(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *scratch, int32_t *logpost)
{
    const int32_t L = m->L, K = m->K, D = m->D, R = m->R, C = m->C;
    const int32_t nreg = 1L << D;
    const int32_t I0 = L > K ? L : K;
    int32_t *lf = scratch;
    int32_t *reg = lf + m->F * L;
    int32_t *root = reg + nreg * L;
    uint32_t *ab = (uint32_t *)(root + R * C);
    int32_t *tmp = (int32_t *)(ab + 2 * I0);
    int32_t r, l;
    rfe_einsum_leaf(m, xq, lf);
    for (r = 0; r < R; r++) {
        int32_t n = nreg / 2, I = L;
        rfe_einsum_regions(lf, L, m->perm + r * m->F, m->bounds, nreg, reg);
        for (l = 0; l < D - 1; l++, n /= 2) {
            rfe_einsum_layer(reg, n, I, K, m->W[l] + (int32_t)r * n * K * I * I, ab, reg);
            I = K;
        }
        rfe_einsum_layer(reg, 1, I, C, m->W[D - 1] + (int32_t)r * C * I * I, ab, root + r * C);
    }
    rfe_einsum_mix(root, R, C, m->mixq, tmp, logpost);
    return rfe_einsum_posterior(logpost, m->priorq, C);
}

int32_t rfe_einsum_fuse(const int32_t *const *lps, int32_t n, int32_t C, int32_t *score)
{
    int32_t c, k, best = 0, bs = 0;
    for (c = 0; c < C; c++) {
        int32_t s = 0;
        for (k = 0; k < n; k++) {
            int32_t v = lps[k][c];
            if (v > RFE_EINSUM_FUSE_CLAMP) v = RFE_EINSUM_FUSE_CLAMP;
            if (v < -RFE_EINSUM_FUSE_CLAMP) v = -RFE_EINSUM_FUSE_CLAMP;
            s += v;
        }
        if (score) score[c] = s;
        if (c == 0 || s > bs) { bs = s; best = c; }
    }
    return best;
}
