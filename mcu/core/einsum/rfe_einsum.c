/*
 * rfe_einsum.c - fixed-point Einsum-network kernels; see rfe_einsum.h and the arithmetic spec in
 * host/rfedge/einsum_fixed.py (the bit-exact Python reference these must match).
 *
 * Written for rv32imc: int32 only; the products that need 64 bits are taken as their high word
 * ((uint64_t)a * b >> 32), which gcc turns into one mulhu (mulh for signed) on rv32im.
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

/* GT[i] = round(2^32 exp(-t^2/2)), t = (i - 448 + 1/2) / 64, i = 0..896; GT[896] = 0 (the clamp target) */
static const uint32_t GT[897] = {
    0u, 0u, 0u, 0u, 0u, 0u,
    0u, 0u, 0u, 0u, 0u, 0u,
    0u, 0u, 0u, 1u, 1u, 1u,
    1u, 1u, 1u, 1u, 1u, 1u,
    1u, 1u, 2u, 2u, 2u, 2u,
    2u, 3u, 3u, 3u, 4u, 4u,
    5u, 5u, 6u, 6u, 7u, 7u,
    8u, 9u, 10u, 11u, 12u, 13u,
    15u, 16u, 18u, 20u, 22u, 24u,
    27u, 29u, 32u, 35u, 39u, 43u,
    47u, 52u, 57u, 62u, 69u, 75u,
    83u, 91u, 99u, 109u, 120u, 131u,
    144u, 158u, 173u, 189u, 207u, 227u,
    248u, 272u, 297u, 325u, 355u, 389u,
    425u, 464u, 507u, 554u, 604u, 660u,
    720u, 786u, 857u, 935u, 1019u, 1111u,
    1210u, 1319u, 1436u, 1564u, 1703u, 1853u,
    2017u, 2194u, 2386u, 2594u, 2820u, 3065u,
    3330u, 3618u, 3929u, 4266u, 4631u, 5025u,
    5452u, 5914u, 6413u, 6953u, 7536u, 8167u,
    8848u, 9583u, 10377u, 11234u, 12158u, 13156u,
    14232u, 15392u, 16643u, 17991u, 19443u, 21008u,
    22693u, 24507u, 26459u, 28561u, 30821u, 33252u,
    35867u, 38677u, 41698u, 44943u, 48429u, 52173u,
    56193u, 60507u, 65137u, 70104u, 75431u, 81143u,
    87267u, 93829u, 100861u, 108393u, 116459u, 125095u,
    134339u, 144230u, 154812u, 166130u, 178231u, 191167u,
    204992u, 219764u, 235542u, 252391u, 270380u, 289580u,
    310068u, 331924u, 355234u, 380089u, 406583u, 434817u,
    464899u, 496941u, 531061u, 567386u, 606047u, 647184u,
    690945u, 737485u, 786968u, 839566u, 895460u, 954843u,
    1017915u, 1084889u, 1155986u, 1231443u, 1311504u, 1396430u,
    1486492u, 1581976u, 1683182u, 1790426u, 1904039u, 2024366u,
    2151772u, 2286638u, 2429364u, 2580369u, 2740091u, 2908988u,
    3087543u, 3276258u, 3475658u, 3686295u, 3908742u, 4143601u,
    4391499u, 4653092u, 4929064u, 5220130u, 5527033u, 5850551u,
    6191495u, 6550707u, 6929068u, 7327494u, 7746938u, 8188392u,
    8652890u, 9141504u, 9655353u, 10195595u, 10763438u, 11360133u,
    11986980u, 12645328u, 13336578u, 14062181u, 14823643u, 15622523u,
    16460437u, 17339058u, 18260121u, 19225416u, 20236799u, 21296188u,
    22405564u, 23566977u, 24782541u, 26054441u, 27384932u, 28776338u,
    30231060u, 31751569u, 33340413u, 35000217u, 36733682u, 38543590u,
    40432801u, 42404258u, 44460985u, 46606089u, 48842762u, 51174280u,
    53604005u, 56135385u, 58771956u, 61517340u, 64375250u, 67349486u,
    70443935u, 73662575u, 77009475u, 80488790u, 84104766u, 87861737u,
    91764126u, 95816445u, 100023292u, 104389353u, 108919400u, 113618288u,
    118490960u, 123542437u, 128777824u, 134202304u, 139821137u, 145639662u,
    151663286u, 157897493u, 164347832u, 171019918u, 177919431u, 185052108u,
    192423746u, 200040193u, 207907346u, 216031150u, 224417587u, 233072682u,
    242002486u, 251213083u, 260710577u, 270501089u, 280590754u, 290985713u,
    301692107u, 312716070u, 324063728u, 335741184u, 347754520u, 360109783u,
    372812982u, 385870080u, 399286986u, 413069545u, 427223534u, 441754651u,
    456668509u, 471970625u, 487666413u, 503761175u, 520260089u, 537168207u,
    554490438u, 572231542u, 590396121u, 608988608u, 628013260u, 647474143u,
    667375126u, 687719873u, 708511825u, 729754200u, 751449975u, 773601880u,
    796212387u, 819283699u, 842817743u, 866816154u, 891280272u, 916211128u,
    941609436u, 967475582u, 993809616u, 1020611242u, 1047879808u, 1075614299u,
    1103813327u, 1132475122u, 1161597527u, 1191177984u, 1221213534u, 1251700801u,
    1282635993u, 1314014890u, 1345832839u, 1378084751u, 1410765089u, 1443867869u,
    1477386652u, 1511314542u, 1545644178u, 1580367736u, 1615476921u, 1650962970u,
    1686816645u, 1723028236u, 1759587557u, 1796483948u, 1833706273u, 1871242926u,
    1909081827u, 1947210428u, 1985615712u, 2024284202u, 2063201962u, 2102354600u,
    2141727277u, 2181304711u, 2221071185u, 2261010553u, 2301106251u, 2341341300u,
    2381698322u, 2422159547u, 2462706823u, 2503321629u, 2543985085u, 2584677969u,
    2625380724u, 2666073479u, 2706736056u, 2747347991u, 2787888550u, 2828336739u,
    2868671327u, 2908870862u, 2948913687u, 2988777961u, 3028441676u, 3067882678u,
    3107078683u, 3146007305u, 3184646067u, 3222972429u, 3260963808u, 3298597598u,
    3335851191u, 3372702004u, 3409127496u, 3445105193u, 3480612713u, 3515627785u,
    3550128272u, 3584092200u, 3617497773u, 3650323403u, 3682547727u, 3714149635u,
    3745108291u, 3775403156u, 3805014010u, 3833920975u, 3862104536u, 3889545566u,
    3916225343u, 3942125576u, 3967228421u, 3991516508u, 4014972953u, 4037581384u,
    4059325956u, 4080191372u, 4100162900u, 4119226391u, 4137368293u, 4154575672u,
    4170836221u, 4186138282u, 4200470852u, 4213823603u, 4226186890u, 4237551767u,
    4247909991u, 4257254040u, 4265577115u, 4272873152u, 4279136830u, 4284363575u,
    4288549568u, 4291691746u, 4293787810u, 4294836226u, 4294836226u, 4293787810u,
    4291691746u, 4288549568u, 4284363575u, 4279136830u, 4272873152u, 4265577115u,
    4257254040u, 4247909991u, 4237551767u, 4226186890u, 4213823603u, 4200470852u,
    4186138282u, 4170836221u, 4154575672u, 4137368293u, 4119226391u, 4100162900u,
    4080191372u, 4059325956u, 4037581384u, 4014972953u, 3991516508u, 3967228421u,
    3942125576u, 3916225343u, 3889545566u, 3862104536u, 3833920975u, 3805014010u,
    3775403156u, 3745108291u, 3714149635u, 3682547727u, 3650323403u, 3617497773u,
    3584092200u, 3550128272u, 3515627785u, 3480612713u, 3445105193u, 3409127496u,
    3372702004u, 3335851191u, 3298597598u, 3260963808u, 3222972429u, 3184646067u,
    3146007305u, 3107078683u, 3067882678u, 3028441676u, 2988777961u, 2948913687u,
    2908870862u, 2868671327u, 2828336739u, 2787888550u, 2747347991u, 2706736056u,
    2666073479u, 2625380724u, 2584677969u, 2543985085u, 2503321629u, 2462706823u,
    2422159547u, 2381698322u, 2341341300u, 2301106251u, 2261010553u, 2221071185u,
    2181304711u, 2141727277u, 2102354600u, 2063201962u, 2024284202u, 1985615712u,
    1947210428u, 1909081827u, 1871242926u, 1833706273u, 1796483948u, 1759587557u,
    1723028236u, 1686816645u, 1650962970u, 1615476921u, 1580367736u, 1545644178u,
    1511314542u, 1477386652u, 1443867869u, 1410765089u, 1378084751u, 1345832839u,
    1314014890u, 1282635993u, 1251700801u, 1221213534u, 1191177984u, 1161597527u,
    1132475122u, 1103813327u, 1075614299u, 1047879808u, 1020611242u, 993809616u,
    967475582u, 941609436u, 916211128u, 891280272u, 866816154u, 842817743u,
    819283699u, 796212387u, 773601880u, 751449975u, 729754200u, 708511825u,
    687719873u, 667375126u, 647474143u, 628013260u, 608988608u, 590396121u,
    572231542u, 554490438u, 537168207u, 520260089u, 503761175u, 487666413u,
    471970625u, 456668509u, 441754651u, 427223534u, 413069545u, 399286986u,
    385870080u, 372812982u, 360109783u, 347754520u, 335741184u, 324063728u,
    312716070u, 301692107u, 290985713u, 280590754u, 270501089u, 260710577u,
    251213083u, 242002486u, 233072682u, 224417587u, 216031150u, 207907346u,
    200040193u, 192423746u, 185052108u, 177919431u, 171019918u, 164347832u,
    157897493u, 151663286u, 145639662u, 139821137u, 134202304u, 128777824u,
    123542437u, 118490960u, 113618288u, 108919400u, 104389353u, 100023292u,
    95816445u, 91764126u, 87861737u, 84104766u, 80488790u, 77009475u,
    73662575u, 70443935u, 67349486u, 64375250u, 61517340u, 58771956u,
    56135385u, 53604005u, 51174280u, 48842762u, 46606089u, 44460985u,
    42404258u, 40432801u, 38543590u, 36733682u, 35000217u, 33340413u,
    31751569u, 30231060u, 28776338u, 27384932u, 26054441u, 24782541u,
    23566977u, 22405564u, 21296188u, 20236799u, 19225416u, 18260121u,
    17339058u, 16460437u, 15622523u, 14823643u, 14062181u, 13336578u,
    12645328u, 11986980u, 11360133u, 10763438u, 10195595u, 9655353u,
    9141504u, 8652890u, 8188392u, 7746938u, 7327494u, 6929068u,
    6550707u, 6191495u, 5850551u, 5527033u, 5220130u, 4929064u,
    4653092u, 4391499u, 4143601u, 3908742u, 3686295u, 3475658u,
    3276258u, 3087543u, 2908988u, 2740091u, 2580369u, 2429364u,
    2286638u, 2151772u, 2024366u, 1904039u, 1790426u, 1683182u,
    1581976u, 1486492u, 1396430u, 1311504u, 1231443u, 1155986u,
    1084889u, 1017915u, 954843u, 895460u, 839566u, 786968u,
    737485u, 690945u, 647184u, 606047u, 567386u, 531061u,
    496941u, 464899u, 434817u, 406583u, 380089u, 355234u,
    331924u, 310068u, 289580u, 270380u, 252391u, 235542u,
    219764u, 204992u, 191167u, 178231u, 166130u, 154812u,
    144230u, 134339u, 125095u, 116459u, 108393u, 100861u,
    93829u, 87267u, 81143u, 75431u, 70104u, 65137u,
    60507u, 56193u, 52173u, 48429u, 44943u, 41698u,
    38677u, 35867u, 33252u, 30821u, 28561u, 26459u,
    24507u, 22693u, 21008u, 19443u, 17991u, 16643u,
    15392u, 14232u, 13156u, 12158u, 11234u, 10377u,
    9583u, 8848u, 8167u, 7536u, 6953u, 6413u,
    5914u, 5452u, 5025u, 4631u, 4266u, 3929u,
    3618u, 3330u, 3065u, 2820u, 2594u, 2386u,
    2194u, 2017u, 1853u, 1703u, 1564u, 1436u,
    1319u, 1210u, 1111u, 1019u, 935u, 857u,
    786u, 720u, 660u, 604u, 554u, 507u,
    464u, 425u, 389u, 355u, 325u, 297u,
    272u, 248u, 227u, 207u, 189u, 173u,
    158u, 144u, 131u, 120u, 109u, 99u,
    91u, 83u, 75u, 69u, 62u, 57u,
    52u, 47u, 43u, 39u, 35u, 32u,
    29u, 27u, 24u, 22u, 20u, 18u,
    16u, 15u, 13u, 12u, 11u, 10u,
    9u, 8u, 7u, 7u, 6u, 6u,
    5u, 5u, 4u, 4u, 3u, 3u,
    3u, 2u, 2u, 2u, 2u, 2u,
    1u, 1u, 1u, 1u, 1u, 1u,
    1u, 1u, 1u, 1u, 1u, 0u,
    0u, 0u, 0u, 0u, 0u, 0u,
    0u, 0u, 0u, 0u, 0u, 0u,
    0u, 0u, 0u,};

/* NLZ8[b] = leading zeros of the byte b (NLZ8[0] = 8) */
static const uint8_t NLZ8[256] = {
    8, 7, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,};

/* NLZ8P8[b] = 8 + NLZ8[b]: leading zeros of top in [2^16, 2^24) from b = top >> 16 */
static const uint8_t NLZ8P8[256] = {
    16, 15, 14, 14, 13, 13, 13, 13, 12, 12, 12, 12, 12, 12, 12, 12,
    11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11, 11,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10, 10,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
};

static inline uint32_t mulhu(uint32_t a, uint32_t b)
{
    return (uint32_t)(((uint64_t)a * b) >> 32);
}

/* floor(a * b / 2^32) for signed a, b: one mulh on rv32im (gcc shifts int64 arithmetically) */
static inline int32_t mulh(int32_t a, int32_t b)
{
    return (int32_t)(((int64_t)a * b) >> 32);
}

static inline uint32_t exp2q(int32_t d)
{
    uint32_t k = (uint32_t)d >> RFE_EINSUM_LU_BITS;
    if (k >= 32u) return 0u;
    return EXPT[d & 255] >> k;
}

uint32_t rfe_einsum_exp2q(int32_t d) { return exp2q(d); }

/* leading zeros of top != 0 (rv32imc has no clz): the byte table on the highest non-zero byte */
static inline int32_t nlz_nz(uint32_t top)
{
    if (top >> 24) return NLZ8[top >> 24];
    if (top >> 16) return 8 + NLZ8[top >> 16];
    if (top >> 8) return 16 + NLZ8[top >> 8];
    return 24 + NLZ8[top];
}

static inline int32_t log2q(uint32_t s)
{
    int32_t n;
    uint32_t idx, frac;
    int32_t lo, v;
    if (s == 0u) s = 1u;
    n = nlz_nz(s);
    s <<= n;
    n = 31 - n;
    idx = (s >> 21) & (255u << 2); /* byte offset of LOGT[bits 30..23] */
    frac = (s << 9) >> 16;         /* bits 22..7 */
    {
        const int32_t *t = (const int32_t *)((const char *)LOGT + idx);
        lo = t[0];
        v = lo + (int32_t)(((uint32_t)(t[1] - lo) * frac) >> 16);
    }
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

int32_t rfe_einsum_scratch_words(const rfe_einsum_model_t *m)
{
    int32_t I = m->I0 > m->K ? m->I0 : m->K;
    return m->F * (m->I0 + 1) + (1L << m->D) * I + m->R * (I * I + 1) + I * I + m->L;
}

/* NORM of n mantissas (the floor: all zero -> all 1); returns the left shift (e -= shift). */
static int32_t norm_vec(uint32_t *s, int32_t n)
{
    int32_t k, sh;
    uint32_t top = 0;
    for (k = 0; k < n; k++) top |= s[k];
    if (!top) {
        for (k = 0; k < n; k++) s[k] = 1u;
        top = 1u;
    }
    sh = nlz_nz(top);
    for (k = 0; k < n; k++) s[k] <<= sh;
    return sh;
}

/* NORM24 (einsum nodes): a top mantissa >= 2^24 is left as it is, else NORM */
static inline int32_t norm24_vec(uint32_t *s, int32_t n)
{
    int32_t k;
    uint32_t top = 0;
    for (k = 0; k < n; k++) top |= s[k];
    return top >> 24 ? 0 : norm_vec(s, n);
}

static inline int32_t norm24_2(uint32_t *s0, uint32_t *s1, uint32_t lim)
{
    uint32_t top = *s0 | *s1;
    int32_t sh;
    if (top >= lim) return 0; /* lim = 2^24 held in a register: one compare-and-branch */
    if (top >> 16) {
        sh = NLZ8P8[top >> 16]; /* the common case, top in [2^16, 2^24) */
    } else {
        if (!top) *s0 = *s1 = top = 1u;
        sh = nlz_nz(top);
    }
    *s0 <<= sh;
    *s1 <<= sh;
    return sh;
}

/* NORM of two mantissas, K = 2 (returns the shift) */
static inline int32_t norm2(uint32_t *s0, uint32_t *s1)
{
    uint32_t top = *s0 | *s1;
    int32_t sh;
    if (top >> 24) {
        sh = NLZ8[top >> 24];
    } else {
        if (!top) *s0 = *s1 = top = 1u;
        sh = nlz_nz(top);
    }
    *s0 <<= sh;
    *s1 <<= sh;
    return sh;
}

/* Gaussian table index: mulhu(2 zq - mb, g), the table centre folded into mb; anything beyond
 * the table (including wrapped negative distances) -> the zero entry */
static inline uint32_t gt_index(int32_t x2, uint32_t mb, uint32_t g)
{
    uint32_t idx = mulhu((uint32_t)x2 - mb, g);
    return idx > 2u * RFE_EINSUM_GT_OFF ? 2u * RFE_EINSUM_GT_OFF : idx;
}

/* The slow path of one feature (every used component far away): the log domain, relative to the
 * nearest component. c: the feature's [L][2 + nw] constants; out: I0 mantissas; returns the exponent. */
static int32_t leaf_slow(const rfe_einsum_model_t *m, const uint32_t *c, int32_t x2, int32_t *q, int32_t *out)
{
    const int32_t L = m->L, I0 = m->I0, nw = m->mixing ? I0 : 1, st = 2 + nw;
    int32_t l, k, qmin = 0x7FFFFFFF, base;
    uint32_t s[RFE_EINSUM_MAX_I];
    for (l = 0; l < L; l++) {
        int32_t u = mulh((int32_t)((uint32_t)x2 - c[l * st]), (int32_t)c[l * st + 1]) - RFE_EINSUM_GT_OFF;
        int32_t t = 2 * u + 1;
        uint32_t w = (uint32_t)(t < 0 ? -t : t), qq;
        /* (w^2 KQ) >> 24 without a 64-bit multiply (a libcall on rv32): w^2 < 2^32 for w < 2^16,
         * and from w = 2^16 on the value exceeds 2^24 >= qmax anyway */
        qq = w < 65536u ? mulhu(w * w, RFE_EINSUM_KQ << 8) : 0xFFFFFFFFu;
        q[l] = qq > (uint32_t)m->qmax ? m->qmax : (int32_t)qq;
        if (q[l] < qmin) qmin = q[l];
    }
    base = qmin & ~255;
    for (k = 0; k < I0; k++) s[k] = 0u;
    for (l = 0; l < L; l++) {
        uint32_t v = exp2q(q[l] - base);
        if (m->mixing)
            for (k = 0; k < I0; k++) s[k] += mulhu(c[l * st + 2 + k], v);
        else
            s[l] = mulhu(c[l * st + 2], v);
    }
    k = norm_vec(s, I0);
    for (l = 0; l < I0; l++) out[l] = (int32_t)s[l];
    return 1 - (base >> 8) - k;
}

/* One feature's I0 densities, computed (no table): out[I0] normalized mantissas; returns the
 * exponent. c: the feature's [L][2 + nw] constants. */
static int32_t leaf_one(const rfe_einsum_model_t *m, const uint32_t *c, int32_t x2, int32_t *q, int32_t *out)
{
    const int32_t L = m->L, I0 = m->I0, nw = m->mixing ? I0 : 1, st = 2 + nw;
    int32_t l, k;
    uint32_t s[RFE_EINSUM_MAX_I], top = 0;
    for (k = 0; k < I0; k++) s[k] = 0u;
    for (l = 0; l < L; l++) {
        const uint32_t *cl = c + l * st;
        uint32_t v = GT[gt_index(x2, cl[0], cl[1])];
        if (m->mixing)
            for (k = 0; k < I0; k++) s[k] += mulhu(cl[2 + k], v);
        else
            s[l] = mulhu(cl[2], v);
    }
    for (k = 0; k < I0; k++) top |= s[k];
    if (top < RFE_EINSUM_FAST_MIN) return leaf_slow(m, c, x2, q, out);
    l = nlz_nz(top);
    for (k = 0; k < I0; k++) out[k] = (int32_t)(s[k] << l);
    return -l;
}

/* Any I0: lf[F][I0] mantissas, lfe[F] exponents (lfe may be NULL); returns the sum of the
 * exponents. Looked up in the leaf table where it has the input's cell, else computed. */
static int32_t leaf_any(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *q, int32_t *lf, int32_t *lfe)
{
    const int32_t L = m->L, I0 = m->I0, nw = m->mixing ? I0 : 1, st = 2 + nw, cw = 1 + (I0 + 1) / 2;
    const uint32_t T = m->lt_bits ? 1u << m->lt_bits : 0u;
    const uint32_t *c = m->leafc;
    int32_t f, k, e, esum = 0;
    for (f = 0; f < m->F; f++, c += L * st, lf += I0) {
        const uint32_t j = T ? (uint32_t)(((int32_t)xq[f] - m->lt_grid[2 * f]) >> m->lt_grid[2 * f + 1]) : 0u;
        if (j < T) {
            const uint32_t *t = m->lt + ((uint32_t)f * T + j) * (uint32_t)cw;
            e = (int32_t)t[0];
            for (k = 0; k < I0; k++) lf[k] = (int32_t)(k & 1 ? t[1 + k / 2] & 0xFFFF0000u : t[1 + k / 2] << 16);
        } else {
            e = leaf_one(m, c, 2 * (int32_t)xq[f], q, lf);
        }
        if (lfe) lfe[f] = e;
        esum += e;
    }
    return esum;
}

/* K = 2 with a leaf table: per feature the cell index, then two words (exponent, both mantissa tops). */
static int32_t leaf_table_k2(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *q, int32_t *lf)
{
    const int16_t *const xe = xq + m->F, *g = m->lt_grid;
    const int32_t tb = m->lt_bits, st = 4 * m->L;
    const uint32_t T = 1u << tb, hi = 0xFFFF0000u;
    const uint32_t *t = m->lt;
    int32_t esum = 0;
    for (; xq < xe; xq++, g += 2, t += 2 * T, lf += 2) {
        const uint32_t j = (uint32_t)(((int32_t)*xq - g[0]) >> g[1]);
        if (j < T) {
            const uint32_t *cell = t + 2 * j;
            const uint32_t w = cell[1];
            esum += (int32_t)cell[0];
            lf[0] = (int32_t)(w << 16);
            lf[1] = (int32_t)(w & hi);
        } else {
            esum += leaf_one(m, m->leafc + (g - m->lt_grid) / 2 * st, 2 * (int32_t)*xq, q, lf);
        }
    }
    return esum;
}

/* K = 2 leaf mixing with a compile-time L: per Gaussian a load pair, mulhu, clamp, table load and
 * two multiply-adds; the two densities stay in registers. */
#define RFE_EINSUM_LEAF_K2(N)                                                                         \
    static int32_t leaf_k2_##N(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *q, int32_t *lf) \
    {                                                                                                 \
        const uint32_t *c = m->leafc;                                                                 \
        const int16_t *const xe = xq + m->F;                                                          \
        int32_t l, esum = 0;                                                                          \
        for (; xq < xe; xq++, c += 4 * (N), lf += 2) {                                                \
            const int32_t x2 = 2 * (int32_t)*xq;                                                      \
            uint32_t s0 = 0, s1 = 0, top;                                                             \
            int32_t sh;                                                                               \
            _Pragma("GCC unroll 16") for (l = 0; l < (N); l++) {                                      \
                /* an index at or beyond the table end (GT[2 OFF] = 0) adds nothing: skipped */       \
                const uint32_t i = mulhu((uint32_t)x2 - c[4 * l], c[4 * l + 1]);                      \
                if (i < 2u * RFE_EINSUM_GT_OFF) {                                                     \
                    const uint32_t v = GT[i];                                                         \
                    s0 += mulhu(c[4 * l + 2], v);                                                     \
                    s1 += mulhu(c[4 * l + 3], v);                                                     \
                }                                                                                     \
            }                                                                                         \
            top = s0 | s1;                                                                            \
            if (top >> 24)                                                                            \
                sh = NLZ8[top >> 24];                                                                 \
            else if (top >= RFE_EINSUM_FAST_MIN)                                                      \
                sh = 8 + NLZ8[top >> 16];                                                             \
            else {                                                                                    \
                sh = -leaf_slow(m, c, x2, q, lf);                                                     \
                esum -= sh;                                                                           \
                continue;                                                                             \
            }                                                                                         \
            lf[0] = (int32_t)(s0 << sh);                                                              \
            lf[1] = (int32_t)(s1 << sh);                                                              \
            esum -= sh;                                                                               \
        }                                                                                             \
        return esum;                                                                                  \
    }

RFE_EINSUM_LEAF_K2(4)
RFE_EINSUM_LEAF_K2(8)
RFE_EINSUM_LEAF_K2(10)
RFE_EINSUM_LEAF_K2(12)
RFE_EINSUM_LEAF_K2(16)

void rfe_einsum_leaf(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *tmp, int32_t *lf)
{
    /* the generic path (it stores the exponents; the K = 2 kernels of rfe_einsum_forward only sum them) */
    (void)leaf_any(m, xq, tmp, lf, lf + m->F * m->I0);
}

static int32_t leaves(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *tmp, int32_t *lf)
{
    if (m->lt_bits) return m->I0 == 2 ? leaf_table_k2(m, xq, tmp, lf) : leaf_any(m, xq, tmp, lf, 0);
    if (m->mixing && m->I0 == 2) {
        switch (m->L) {
        case 4: return leaf_k2_4(m, xq, tmp, lf);
        case 8: return leaf_k2_8(m, xq, tmp, lf);
        case 10: return leaf_k2_10(m, xq, tmp, lf);
        case 12: return leaf_k2_12(m, xq, tmp, lf);
        case 16: return leaf_k2_16(m, xq, tmp, lf);
        default: break;
        }
    }
    return leaf_any(m, xq, tmp, lf, lf + m->F * m->I0);
}

/* Below the leaves no vector carries its exponent: a node's exponent is the sum of its children's,
 * so a repetition's root exponent is the sum of all leaf exponents (the same for every repetition)
 * minus the NORM shifts made inside the repetition, which are counted in *shifts. */

#define LEAF(lf, off) ((const int32_t *)((const char *)(lf) + (off))) /* permo: byte offsets */

/* Leaf regions of one repetition: out[j] = product of its features' densities, NORM after
 * every product but the last. */
static void regions_any(const int32_t *lf, int32_t I, const uint16_t *permo, const uint16_t *bounds, int32_t nreg,
                        int32_t *out, int32_t *shifts)
{
    int32_t j, p, k;
    uint32_t s[RFE_EINSUM_MAX_I];
    for (j = 0; j < nreg; j++, out += I) {
        const int32_t *a = LEAF(lf, permo[bounds[j]]);
        for (k = 0; k < I; k++) s[k] = (uint32_t)a[k];
        for (p = bounds[j] + 1; p < bounds[j + 1]; p++) {
            a = LEAF(lf, permo[p]);
            for (k = 0; k < I; k++) s[k] = mulhu(s[k], (uint32_t)a[k]);
            if (p < bounds[j + 1] - 1) *shifts += norm_vec(s, I); /* not after the last product */
        }
        for (k = 0; k < I; k++) out[k] = (int32_t)s[k];
    }
}

/* One einsum layer of one repetition: node j combines x[2j], x[2j+1] (I mantissas each) with
 * W[j][O][I][I]; out[j] = O normalized mantissas. In place (out == x) is fine: a node reads both
 * children before writing and O <= 2 I. */
static void layer_any(const int32_t *x, int32_t n, int32_t I, int32_t O, const uint32_t *W, uint32_t *p,
                      int32_t *out, int32_t *shifts)
{
    int32_t j, i, q, o;
    uint32_t s[RFE_EINSUM_MAX_I];
    for (j = 0; j < n; j++, x += 2 * I, out += O) {
        const int32_t *a = x, *b = x + I;
        if (I <= O) { /* product order: I^2 (O + 1) products */
            for (i = 0; i < I; i++)
                for (q = 0; q < I; q++) p[i * I + q] = mulhu((uint32_t)a[i], (uint32_t)b[q]);
            for (o = 0; o < O; o++) {
                uint32_t t = 0;
                for (i = 0; i < I * I; i++) t += mulhu(*W++, p[i]);
                s[o] = t;
            }
        } else { /* factored order: O I (I + 1) products */
            for (o = 0; o < O; o++) {
                uint32_t acc = 0;
                for (i = 0; i < I; i++, W += I) {
                    uint32_t t = 0;
                    for (q = 0; q < I; q++) t += mulhu(W[q], (uint32_t)b[q]);
                    acc += mulhu((uint32_t)a[i], t);
                }
                s[o] = acc;
            }
        }
        *shifts += norm24_vec(s, O);
        for (o = 0; o < O; o++) out[o] = (int32_t)s[o];
    }
}

/* The factored order for a compile-time I > O (the plain form's first layer, I = L): the children
 * stay in registers, a term is a load, a mulhu and an add. */
#define RFE_EINSUM_LAYER_N(N)                                                                         \
    static void layer_##N(const int32_t *x, int32_t n, int32_t O, const uint32_t *W, int32_t *out,    \
                          int32_t *shifts)                                                            \
    {                                                                                                 \
        int32_t j, i, q, o;                                                                           \
        uint32_t s[RFE_EINSUM_MAX_I], bl[N], al[N];                                                   \
        for (j = 0; j < n; j++, x += 2 * (N), out += O) {                                             \
            _Pragma("GCC unroll 16") for (q = 0; q < (N); q++) {                                      \
                al[q] = (uint32_t)x[q];                                                               \
                bl[q] = (uint32_t)x[(N) + q];                                                         \
            }                                                                                         \
            for (o = 0; o < O; o++) {                                                                 \
                uint32_t acc = 0;                                                                     \
                for (i = 0; i < (N); i++, W += (N)) {                                                 \
                    uint32_t t = 0;                                                                   \
                    _Pragma("GCC unroll 16") for (q = 0; q < (N); q++) t += mulhu(W[q], bl[q]);       \
                    acc += mulhu(al[i], t);                                                           \
                }                                                                                     \
                s[o] = acc;                                                                           \
            }                                                                                         \
            *shifts += norm24_vec(s, O);                                                                \
            for (o = 0; o < O; o++) out[o] = (int32_t)s[o];                                           \
        }                                                                                             \
    }

RFE_EINSUM_LAYER_N(4)
RFE_EINSUM_LAYER_N(8)
RFE_EINSUM_LAYER_N(10)
RFE_EINSUM_LAYER_N(12)
RFE_EINSUM_LAYER_N(16)

static void layer_gen(const int32_t *x, int32_t n, int32_t I, int32_t O, const uint32_t *W, uint32_t *p,
                      int32_t *out, int32_t *shifts)
{
    if (I > O) {
        switch (I) {
        case 4: layer_4(x, n, O, W, out, shifts); return;
        case 8: layer_8(x, n, O, W, out, shifts); return;
        case 10: layer_10(x, n, O, W, out, shifts); return;
        case 12: layer_12(x, n, O, W, out, shifts); return;
        case 16: layer_16(x, n, O, W, out, shifts); return;
        default: break;
        }
    }
    layer_any(x, n, I, O, W, p, out, shifts);
}

/* The root's products of one repetition: P[i][j] = mulhu(a_i, b_j). */
static void root_products(const int32_t *x, int32_t I, uint32_t *P)
{
    int32_t i, q;
    for (i = 0; i < I; i++)
        for (q = 0; q < I; q++) P[i * I + q] = mulhu((uint32_t)x[i], (uint32_t)x[I + q]);
}

/* acc[q] = sum_k mulhu(W[k][q], P[k]), q < G, k < n: G classes per pass share each P load, two
 * products per iteration; the accumulators stay in registers. */
#define RFE_EINSUM_CLASS_PASS(G)                                                                      \
    static void class_pass_##G(const uint32_t *W, const uint32_t *P, int32_t n, uint32_t *acc)       \
    {                                                                                                 \
        uint32_t s[G];                                                                                \
        int32_t k, q;                                                                                 \
        _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] = 0u;                                 \
        for (k = 0; k + 2 <= n; k += 2, W += 2 * (G)) {                                               \
            const uint32_t v = P[k], u = P[k + 1];                                                    \
            _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[q], v);                \
            _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[(G) + q], u);          \
        }                                                                                             \
        if (k < n) {                                                                                  \
            const uint32_t v = P[k];                                                                  \
            _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[q], v);                \
        }                                                                                             \
        _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) acc[q] = s[q];                             \
    }

RFE_EINSUM_CLASS_PASS(11)
RFE_EINSUM_CLASS_PASS(10)
RFE_EINSUM_CLASS_PASS(7)

/* The same for I = 2 (four root products per repetition), skipping the repetitions whose products
 * the alignment zeroed (bit r of live clear: 2^-32 below the largest, ~9% of them on the trained
 * networks): a zero product adds nothing, so the sums are those of class_pass_G. */
#define RFE_EINSUM_CLASS_PASS4(G)                                                                     \
    static void class_pass4_##G(const uint32_t *W, const uint32_t *P, int32_t R, uint32_t live,      \
                                uint32_t *acc)                                                        \
    {                                                                                                 \
        uint32_t s[G];                                                                                \
        int32_t r, q;                                                                                 \
        _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] = 0u;                                 \
        for (r = 0; r < R; r++, W += 4 * (G), P += 4, live >>= 1) {                                   \
            if (!(live & 1u)) continue;                                                               \
            {                                                                                         \
                const uint32_t v = P[0], u = P[1];                                                    \
                _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[q], v);            \
                _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[(G) + q], u);      \
            }                                                                                         \
            {                                                                                         \
                const uint32_t v = P[2], u = P[3];                                                    \
                _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[2 * (G) + q], v);  \
                _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) s[q] += mulhu(W[3 * (G) + q], u);  \
            }                                                                                         \
        }                                                                                             \
        _Pragma("GCC unroll 16") for (q = 0; q < (G); q++) acc[q] = s[q];                             \
    }

RFE_EINSUM_CLASS_PASS4(11)
RFE_EINSUM_CLASS_PASS4(10)
RFE_EINSUM_CLASS_PASS4(7)

/* acc[c] = sum_k mulhu(W_c[k], P[k]), k < n. Classes in groups (11 while at least 11 remain, then
 * one of 10 or of 7 if that many remain), each group's weights interleaved [n][G]; the classes
 * left after the groups row by row (rfedge_codegen.emit_einsum writes this layout). With R > 0
 * (I = 2, n = 4 R, R <= 32) the groups skip the repetitions whose bit of ``live`` is clear (their
 * products must be zero: the row-by-row classes add them). */
#define RFE_EINSUM_CLASS_GROUP(G)                                                                     \
    do {                                                                                              \
        if (R)                                                                                        \
            class_pass4_##G(W, P, R, live, acc + c);                                                  \
        else                                                                                          \
            class_pass_##G(W, P, n, acc + c);                                                         \
    } while (0)

static void class_sums(const uint32_t *W, const uint32_t *P, int32_t n, int32_t R, uint32_t live, int32_t C,
                       uint32_t *acc)
{
    int32_t c = 0, k;
    for (; c + 11 <= C; c += 11, W += 11 * n) RFE_EINSUM_CLASS_GROUP(11);
    if (c + 10 <= C) {
        RFE_EINSUM_CLASS_GROUP(10);
        c += 10;
        W += 10 * n;
    } else if (c + 7 <= C) {
        RFE_EINSUM_CLASS_GROUP(7);
        c += 7;
        W += 7 * n;
    }
    for (; c < C; c++) {
        uint32_t s0 = 0;
        for (k = 0; k < n; k++) s0 += mulhu(*W++, P[k]);
        acc[c] = s0;
    }
}

/* ---- K = 2: vectors travel in registers ---- */
typedef struct {
    uint32_t m0, m1;
} v2_t;

/* the K = 2 helpers must inline into their loops so the vectors and the shift count stay in registers */
#if defined(__GNUC__)
#define RFE_INLINE static inline __attribute__((always_inline))
/* keep a constant in a register (not re-materialized, not folded into a shift-and-test) */
#define RFE_REG(v) __asm__("" : "+r"(v))
#define RFE_NOINLINE __attribute__((noinline))
#else
#define RFE_INLINE static inline
#define RFE_REG(v) ((void)0)
#define RFE_NOINLINE
#endif

/* a region of more than two features (not in the paper configurations): NORM between products;
 * the shift count comes back in *sh (a local of the caller's slow path only) */
static RFE_NOINLINE v2_t region_2_long(const int32_t *lf, const uint16_t *po, int32_t n, int32_t *sh)
{
    const int32_t *a = LEAF(lf, po[0]);
    v2_t r;
    int32_t p, t = 0;
    r.m0 = (uint32_t)a[0];
    r.m1 = (uint32_t)a[1];
    for (p = 1; p < n; p++) {
        a = LEAF(lf, po[p]);
        r.m0 = mulhu(r.m0, (uint32_t)a[0]);
        r.m1 = mulhu(r.m1, (uint32_t)a[1]);
        if (p < n - 1) t += norm2(&r.m0, &r.m1);
    }
    *sh = t;
    return r;
}

RFE_INLINE v2_t region_2(const int32_t *lf, const uint16_t *po, int32_t n, int32_t *shifts)
{
    const int32_t *a = LEAF(lf, po[0]);
    v2_t r;
    if (n > 2) {
        int32_t t;
        r = region_2_long(lf, po, n, &t);
        *shifts += t;
        return r;
    }
    r.m0 = (uint32_t)a[0];
    r.m1 = (uint32_t)a[1];
    if (n == 2) { /* balanced regions of the paper configurations hold 1 or 2 features */
        a = LEAF(lf, po[1]);
        r.m0 = mulhu(r.m0, (uint32_t)a[0]);
        r.m1 = mulhu(r.m1, (uint32_t)a[1]);
    }
    return r;
}

RFE_INLINE v2_t node_2(v2_t a, v2_t b, const uint32_t *W, int32_t *shifts, uint32_t lim)
{
    /* I = K = 2: the product order (4 + 8 products) */
    const uint32_t p00 = mulhu(a.m0, b.m0), p01 = mulhu(a.m0, b.m1), p10 = mulhu(a.m1, b.m0),
                   p11 = mulhu(a.m1, b.m1);
    v2_t r;
    r.m0 = mulhu(W[0], p00) + mulhu(W[1], p01) + mulhu(W[2], p10) + mulhu(W[3], p11);
    r.m1 = mulhu(W[4], p00) + mulhu(W[5], p01) + mulhu(W[6], p10) + mulhu(W[7], p11);
    *shifts += norm24_2(&r.m0, &r.m1, lim);
    return r;
}

RFE_INLINE void put_2(int32_t *out, v2_t v)
{
    out[0] = (int32_t)v.m0;
    out[1] = (int32_t)v.m1;
}

RFE_INLINE v2_t get_2(const int32_t *x)
{
    v2_t v;
    v.m0 = (uint32_t)x[0];
    v.m1 = (uint32_t)x[1];
    return v;
}

/* A leaf region of at most two features through the region-pair table (rego): ro[0], ro[1] byte
 * offsets into the leaf table, ro[1] < 0: a single feature. */
RFE_INLINE v2_t region_2p(const int32_t *lf, const int16_t *ro)
{
    const int32_t *a = LEAF(lf, ro[0]);
    const int32_t o1 = ro[1];
    v2_t r;
    r.m0 = (uint32_t)a[0];
    r.m1 = (uint32_t)a[1];
    if (o1 >= 0) {
        a = LEAF(lf, o1);
        r.m0 = mulhu(r.m0, (uint32_t)a[0]);
        r.m1 = mulhu(r.m1, (uint32_t)a[1]);
    }
    return r;
}

/* The regions and the first two einsum layers of one repetition in registers: every group of 4
 * leaf regions becomes one layer-2 input (needs D >= 3). ro: this repetition's region pairs;
 * W0, W1: its weights. */
/* (kept out of rfe_einsum_forward: inlined there it loses registers to the outer loops) */
static RFE_NOINLINE int32_t regions_l01_2(const int32_t *lf, const int16_t *ro, int32_t nreg, const uint32_t *W0,
                                          const uint32_t *W1, int32_t *out)
{
    uint32_t lim = 1u << 24;
    RFE_REG(lim);
    int32_t j, sh = 0;
    for (j = 0; j < nreg; j += 4, ro += 8, W0 += 16, W1 += 8, out += 2) {
        v2_t r0 = region_2p(lf, ro);
        v2_t r1 = region_2p(lf, ro + 2);
        v2_t n0 = node_2(r0, r1, W0, &sh, lim);
        v2_t r2 = region_2p(lf, ro + 4);
        v2_t r3 = region_2p(lf, ro + 6);
        v2_t n1 = node_2(r2, r3, W0 + 8, &sh, lim);
        put_2(out, node_2(n0, n1, W1, &sh, lim));
    }
    return sh;
}

/* Three layers deep: every group of 8 leaf regions becomes one layer-3 input (D >= 4). */
RFE_INLINE v2_t group8_2(const int32_t *lf, const int16_t *ro, const uint32_t *W0, const uint32_t *W1,
                         const uint32_t *W2, int32_t *sh, uint32_t lim)
{
    v2_t r0 = region_2p(lf, ro);
    v2_t r1 = region_2p(lf, ro + 2);
    v2_t n0 = node_2(r0, r1, W0, sh, lim);
    v2_t r2 = region_2p(lf, ro + 4);
    v2_t r3 = region_2p(lf, ro + 6);
    v2_t n1 = node_2(r2, r3, W0 + 8, sh, lim);
    v2_t q0 = node_2(n0, n1, W1, sh, lim);
    v2_t r4 = region_2p(lf, ro + 8);
    v2_t r5 = region_2p(lf, ro + 10);
    v2_t n2 = node_2(r4, r5, W0 + 16, sh, lim);
    v2_t r6 = region_2p(lf, ro + 12);
    v2_t r7 = region_2p(lf, ro + 14);
    v2_t n3 = node_2(r6, r7, W0 + 24, sh, lim);
    v2_t q1 = node_2(n2, n3, W1 + 8, sh, lim);
    return node_2(q0, q1, W2, sh, lim);
}

static RFE_NOINLINE int32_t regions_l012_2(const int32_t *lf, const int16_t *ro, int32_t nreg, const uint32_t *W0,
                                           const uint32_t *W1, const uint32_t *W2, int32_t *out)
{
    uint32_t lim = 1u << 24;
    RFE_REG(lim);
    int32_t j, sh = 0;
    for (j = 0; j < nreg; j += 8, ro += 16, W0 += 32, W1 += 16, W2 += 8, out += 2)
        put_2(out, group8_2(lf, ro, W0, W1, W2, &sh, lim));
    return sh;
}

/* Four layers deep: every group of 16 leaf regions becomes one layer-4 input (D >= 5); with W4
 * (D >= 6) also layer 4: every group of 32 becomes one layer-5 input. */
static RFE_NOINLINE int32_t regions_l0123_2(const int32_t *lf, const int16_t *ro, int32_t nreg, const uint32_t *W0,
                                            const uint32_t *W1, const uint32_t *W2, const uint32_t *W3,
                                            const uint32_t *W4, int32_t *out)
{
    int32_t j, sh = 0;
    uint32_t lim = 1u << 24;
    v2_t prev = {0u, 0u};
    RFE_REG(lim);
    for (j = 0; j < nreg; j += 16, ro += 32, W0 += 64, W1 += 32, W2 += 16, W3 += 8) {
        v2_t a = group8_2(lf, ro, W0, W1, W2, &sh, lim);
        v2_t b = group8_2(lf, ro + 16, W0 + 32, W1 + 16, W2 + 8, &sh, lim);
        v2_t x = node_2(a, b, W3, &sh, lim);
        if (!W4) {
            put_2(out, x);
            out += 2;
        } else if (j & 16) {
            put_2(out, node_2(prev, x, W4, &sh, lim));
            out += 2;
            W4 += 8;
        } else {
            prev = x;
        }
    }
    return sh;
}

static int32_t regions_2(const int32_t *lf, const uint16_t *permo, const uint16_t *bounds, int32_t nreg, int32_t *out)
{
    int32_t j, sh = 0;
    for (j = 0; j < nreg; j++, out += 2)
        put_2(out, region_2(lf, permo + bounds[j], bounds[j + 1] - bounds[j], &sh));
    return sh;
}

static int32_t layer_2(const int32_t *x, int32_t n, const uint32_t *W, int32_t *out)
{
    uint32_t lim = 1u << 24;
    RFE_REG(lim);
    int32_t j, sh = 0;
    for (j = 0; j < n; j++, x += 4, out += 2, W += 8) put_2(out, node_2(get_2(x), get_2(x + 2), W, &sh, lim));
    return sh;
}

#ifdef RFE_EINSUM_PROFILE
#define PROF(i) rfe_einsum_prof_mark(i)
#else
#define PROF(i) ((void)0)
#endif

/* Root sums and the mixture over repetitions: align the root products of all repetitions to the
 * largest exponent, one dot product per class; then the log-posteriors LOG2(acc_c) + pc_c - LZ with
 * the normalizer summed in the linear domain (the common exponent cancels). roots: [R][I*I]
 * products (shifted in place), rootE: [R] exponents; returns the argmax. */
static RFE_NOINLINE int32_t root_classes(const rfe_einsum_model_t *m, uint32_t *roots, const int32_t *rootE,
                                         int32_t *logpost)
{
    const int32_t R = m->R, C = m->C, I = m->D > 1 ? m->K : m->I0, II = I * I, n = R * II;
    const int32_t rshR = m->rsh_r, rshC = m->rsh_c;
    uint32_t *acc = (uint32_t *)logpost;
    int32_t r, c, E = rootE[0], best, mx, lz;
    uint32_t z = 0;
    for (r = 1; r < R; r++)
        if (rootE[r] > E) E = rootE[r];
    E += rshR;
    if (II == 4 && R <= 32) {
        uint32_t live = 0u;
        for (r = 0; r < R; r++, roots += 4) {
            const int32_t s = E - rootE[r];
            if (s < 32) {
                live |= 1u << r;
                roots[0] >>= s;
                roots[1] >>= s;
                roots[2] >>= s;
                roots[3] >>= s;
            } else {
                roots[0] = roots[1] = roots[2] = roots[3] = 0u;
            }
        }
        class_sums(m->WR, roots - n, n, R, live, C, acc);
    } else {
        for (r = 0; r < R; r++) {
            const int32_t s = E - rootE[r];
            uint32_t *v = roots + r * II;
            for (c = 0; c < II; c++) v[c] = s < 32 ? v[c] >> s : 0u;
        }
        class_sums(m->WR, roots, n, 0, 0u, C, acc);
    }
    for (c = 0; c < C; c++) z += mulhu(acc[c] >> rshC, m->pw[c]);
    lz = m->pcmax + log2q(z) + (rshC << RFE_EINSUM_LU_BITS);
    /* log-posteriors and the first class holding their maximum */
    best = 0;
    mx = INT32_MIN;
    for (c = 0; c < C; c++) {
        const int32_t j = log2q(acc[c]) + m->pc[c] - lz;
        logpost[c] = j;
        if (j > mx) {
            mx = j;
            best = c;
        }
    }
    return best;
}

int32_t rfe_einsum_forward(const rfe_einsum_model_t *m, const int16_t *xq, int32_t *scratch, int32_t *logpost)
{
    const int32_t K = m->K, D = m->D, R = m->R, I0 = m->I0;
    const int32_t nreg = 1L << D;
    const int32_t Im = I0 > K ? I0 : K;
    int32_t *lf = scratch; /* [F][I0] mantissas, then [F] exponents */
    int32_t *reg = lf + m->F * (I0 + 1);
    uint32_t *roots = (uint32_t *)(reg + nreg * Im); /* [R][I*I] root products */
    int32_t *rootE = (int32_t *)(roots + R * Im * Im);
    uint32_t *p = (uint32_t *)(rootE + R);
    int32_t *tmp = (int32_t *)(p + Im * Im);
    int32_t r, l, best, esum;
    esum = leaves(m, xq, tmp, lf);
    PROF(0);
    for (r = 0; r < R; r++) {
        int32_t n = nreg / 2, I = I0, sh = 0;
        const uint16_t *permo = m->permo + r * m->F;
        const int16_t *ro = m->rego ? m->rego + (int32_t)r * nreg * 2 : 0;
        l = 0;
        if (m->rego && D >= 6) {
            /* regions and layers 0-4 fused (SPR) */
            sh = regions_l0123_2(lf, ro, nreg, m->W[0] + (int32_t)r * n * 8,
                                 m->W[1] + (int32_t)r * (n / 2) * 8, m->W[2] + (int32_t)r * (n / 4) * 8,
                                 m->W[3] + (int32_t)r * (n / 8) * 8, m->W[4] + (int32_t)r * (n / 16) * 8, reg);
            PROF(1);
            l = 5;
            n /= 32;
            I = K;
        } else if (m->rego && D >= 5) {
            /* regions and layers 0-3 fused (WA) */
            sh = regions_l0123_2(lf, ro, nreg, m->W[0] + (int32_t)r * n * 8,
                                 m->W[1] + (int32_t)r * (n / 2) * 8, m->W[2] + (int32_t)r * (n / 4) * 8,
                                 m->W[3] + (int32_t)r * (n / 8) * 8, 0, reg);
            PROF(1);
            l = 4;
            n /= 16;
            I = K;
        } else if (m->rego && D >= 4) {
            /* regions and layers 0-2 fused (SA) */
            sh = regions_l012_2(lf, ro, nreg, m->W[0] + (int32_t)r * n * 8,
                                m->W[1] + (int32_t)r * (n / 2) * 8, m->W[2] + (int32_t)r * (n / 4) * 8, reg);
            PROF(1);
            l = 3;
            n /= 8;
            I = K;
        } else if (m->rego && D >= 3) {
            /* regions, layers 0 and 1 fused */
            sh = regions_l01_2(lf, ro, nreg, m->W[0] + (int32_t)r * n * 8,
                               m->W[1] + (int32_t)r * (n / 2) * 8, reg);
            PROF(1);
            l = 2;
            n /= 4;
            I = K;
        } else {
            if (I0 == 2)
                sh = regions_2(lf, permo, m->bounds, nreg, reg);
            else
                regions_any(lf, I0, permo, m->bounds, nreg, reg, &sh);
            PROF(1);
        }
        for (; l < D - 1; l++, n /= 2) {
            if (I == 2 && K == 2)
                sh += layer_2(reg, n, m->W[l] + (int32_t)r * n * 8, reg);
            else
                layer_gen(reg, n, I, K, m->W[l] + (int32_t)r * n * K * I * I, p, reg, &sh);
            I = K;
        }
        PROF(2);
        if (I == 2) {
            uint32_t *pr = roots + r * 4;
            const uint32_t a0 = (uint32_t)reg[0], a1 = (uint32_t)reg[1], b0 = (uint32_t)reg[2], b1 = (uint32_t)reg[3];
            pr[0] = mulhu(a0, b0);
            pr[1] = mulhu(a0, b1);
            pr[2] = mulhu(a1, b0);
            pr[3] = mulhu(a1, b1);
        } else {
            root_products(reg, I, roots + r * I * I);
        }
        rootE[r] = esum - sh;
        PROF(3);
    }
    best = root_classes(m, roots, rootE, logpost);
    PROF(4);
    return best;
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
