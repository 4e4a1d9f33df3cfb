import { ApiError } from "./api";

export interface Problem {
  message: string;
  /** Whether trying again may help, so the page offers a button for it. */
  retry: boolean;
}

export const NOT_IN_ZALO: Problem = {
  message: "Vui lòng mở trang Hạng thành viên trong ứng dụng Zalo của cửa hàng.",
  retry: false,
};

/** What a customer is told when loading the page failed. */
export function problemOf(error: unknown): Problem {
  const status = error instanceof ApiError ? error.status : null;
  if (status === 401) {
    return {
      message: "Phiên đăng nhập Zalo đã hết hạn. Vui lòng đóng ứng dụng và mở lại.",
      retry: false,
    };
  }
  if (status === 503) {
    return {
      message: "Hệ thống đang bận. Vui lòng thử lại sau giây lát.",
      retry: true,
    };
  }
  return {
    message: "Chưa thể tải thông tin hạng thành viên lúc này. Vui lòng thử lại sau.",
    retry: true,
  };
}

/** What a customer is told when linking the phone number failed. */
export function phoneProblemOf(error: unknown): string {
  if (error instanceof ApiError && error.status === 422) {
    return "Zalo chưa xác nhận được số điện thoại của bạn. Vui lòng thử lại.";
  }
  if (error instanceof ApiError) return problemOf(error).message;
  // getPhoneNumber refuses when the member declines to share the number.
  return "Bạn chưa đồng ý chia sẻ số điện thoại nên chưa thể liên kết.";
}
