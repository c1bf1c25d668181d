// dlib_golden.cpp regenerates dlib_golden.txt and the chips next to it with
// dlib itself (Debian's libdlib-dev 19.24+dfsg-1). It is documentation for
// the golden files, not part of the build:
//
//   g++ -O2 -std=c++14 -o dlib_golden dlib_golden.cpp -ldlib -lopenblas
//   ./dlib_golden dlib_face_recognition_resnet_model_v1.dat < list > dlib_golden.txt
//
// Each input line: NAME RAW W H x0 y0 ... x4 y4, where RAW holds the photo
// as W×H RGB bytes (as OpenCV decodes it) and the five points are dlib's
// (68-point indices 45, 42, 36, 39, 33, rounded to integers as dlib's
// full_object_detection stores them). For each line it writes NAME.chip
// (dlib's 150×150 RGB chip, padding 0.25) and prints NAME, the points and
// dlib's 128 descriptor values of that chip.
#include <dlib/dnn.h>
#include <dlib/image_processing.h>
#include <fstream>
#include <iomanip>
#include <iostream>
using namespace dlib;

template <template <int, template <typename> class, int, typename> class B, int N, template <typename> class BN, typename S>
using res = add_prev1<B<N, BN, 1, tag1<S>>>;
template <template <int, template <typename> class, int, typename> class B, int N, template <typename> class BN, typename S>
using res_down = add_prev2<avg_pool<2, 2, 2, 2, skip1<tag2<B<N, BN, 2, tag1<S>>>>>>;
template <int N, template <typename> class BN, int stride, typename S>
using blk = BN<con<N, 3, 3, 1, 1, relu<BN<con<N, 3, 3, stride, stride, S>>>>>;
template <int N, typename S> using ar = relu<res<blk, N, affine, S>>;
template <int N, typename S> using ard = relu<res_down<blk, N, affine, S>>;
template <typename S> using lv0 = ard<256, S>;
template <typename S> using lv1 = ar<256, ar<256, ard<256, S>>>;
template <typename S> using lv2 = ar<128, ar<128, ard<128, S>>>;
template <typename S> using lv3 = ar<64, ar<64, ar<64, ard<64, S>>>>;
template <typename S> using lv4 = ar<32, ar<32, ar<32, S>>>;
using net_t = loss_metric<fc_no_bias<128, avg_pool_everything<lv0<lv1<lv2<lv3<lv4<
    max_pool<3, 3, 2, 2, relu<affine<con<32, 7, 7, 2, 2, input_rgb_image_sized<150>>>>>>>>>>>>>;

int main(int argc, char** argv) {
    net_t net;
    deserialize(argv[1]) >> net;
    std::string name, raw;
    long w, h;
    std::cout << std::setprecision(9);
    while (std::cin >> name >> raw >> w >> h) {
        std::vector<point> pts(5);
        for (auto& p : pts) {
            long x, y;
            std::cin >> x >> y;
            p = point(x, y);
        }
        matrix<rgb_pixel> img(h, w);
        std::ifstream(raw, std::ios::binary).read((char*)&img(0, 0), w * h * 3);
        matrix<rgb_pixel> chip;
        extract_image_chip(img, get_face_chip_details(full_object_detection(rectangle(0, 0, w - 1, h - 1), pts), 150, 0.25), chip);
        std::ofstream(name + ".chip", std::ios::binary).write((const char*)&chip(0, 0), 150 * 150 * 3);
        matrix<float, 0, 1> d = net(chip);
        std::cout << name;
        for (auto& p : pts) std::cout << " " << p.x() << " " << p.y();
        for (long i = 0; i < d.size(); i++) std::cout << " " << d(i);
        std::cout << "\n";
    }
}
